"""Rotary settings in config.json, as the model types with partial rotary (GPT-NeoX, Phi-3) write them: the
newer ``rope_parameters`` (or the older ``rope_scaling``) object, or older top-level fields with each type's own
names (GPT-NeoX's ``rotary_emb_base`` and ``rotary_pct``). Only plain RoPE is reproduced; scaled variants
(Phi-3's ``longrope``, formerly ``su``, and the others) are refused."""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .common import field


def rope_from_hf(hf: dict[str, Any], theta_fields: tuple[str, ...] = ("rope_theta",),
                 fraction_fields: tuple[str, ...] = ("partial_rotary_factor",),
                 default_fraction: float = 1.0) -> tuple[float, float]:
    """(rope_theta, rotary fraction) of a config.json, as transformers reads them: the rotary object's values
    first, then the type's top-level fields (``theta_fields``, ``fraction_fields``, in order).

    Raises:
        CheckpointError: a rope type other than ``default``, or a rotary object that is not one.
    """
    params = field(hf, "rope_parameters") or field(hf, "rope_scaling") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"config.json: rope_parameters must be an object, got {params!r}")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise CheckpointError(f"config.json: rope_type {kind!r} is not supported; trilogy implements plain RoPE "
                              "(rope_type 'default') only")

    def first(key: str, legacy: tuple[str, ...], default: float) -> float:
        values = [params.get(key)] + [field(hf, name) for name in legacy]
        return float(next((value for value in values if value is not None), default))

    return first("rope_theta", theta_fields, 10000.0), first("partial_rotary_factor", fraction_fields,
                                                             default_fraction)


def rope_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The ``rope_parameters`` object of ``config``'s rotary positions."""
    return {"rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta,
                                "partial_rotary_factor": config.rotary_fraction}}
