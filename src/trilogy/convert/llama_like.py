"""Model types that transformers writes as Llama with a few changes (its modular files: ``class
GemmaForCausalLM(LlamaForCausalLM)``), Phi-3 and Gemma here. Their config.json is read by the Llama converter,
with the type's own defaults for the fields it leaves out and the fields the type fixes, and the ModelConfig
fields that differ are stated on top; each type's module says only what differs.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import llama
from .rope import rope_from_hf


def config_from_hf(hf: dict[str, Any], architecture: dict[str, str], defaults: dict[str, Any],
                   fixed: dict[str, Any], partial_rotary: bool, **changes: Any) -> ModelConfig:
    """``hf`` read as the config.json of the Llama class with the same head (``architecture``: its arch and
    head), missing fields from ``defaults``, ``fixed`` fields as given whatever config.json says, then
    ``changes``.

    Args:
        partial_rotary: the type rotates only ``partial_rotary_factor`` of each head (Phi-3); else it rotates
            all of it whatever config.json says (Gemma ignores the field, as transformers does).
    Raises:
        CheckpointError: what Llama's converter refuses (rope scaling, ``pretraining_tp``, ...).
    """
    theta, fraction = rope_from_hf(hf)
    given = {name: value for name, value in hf.items() if value is not None}
    plain_rope = {"rope_parameters": {"rope_type": "default", "rope_theta": theta}, "rope_scaling": None}
    name = next(name for name, fields in llama.ARCHITECTURES.items() if fields == architecture)
    config = llama.config_from_hf({**defaults, **given, **fixed, **plain_rope}, name)
    return config.replace(rotary_fraction=fraction if partial_rotary else 1.0, **changes)


def config_to_hf(config: ModelConfig, dropped: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """Llama's config.json of ``config`` without the fields ``dropped`` (the type has no such field), with
    ``changes`` on top."""
    written = {name: value for name, value in llama.config_to_hf(config).items() if name not in dropped}
    return {**written, **changes}
