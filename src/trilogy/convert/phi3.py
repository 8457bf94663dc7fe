"""Phi-3 (``model_type: phi3``): Phi3ForCausalLM, Phi3Model, Phi3ForSequenceClassification,
Phi3ForTokenClassification. Llama without biases (see ``llama``), with q, k, v fused in ``qkv_proj`` (in our
order: read as it is) and the MLP's gate and up fused in ``gate_up_proj`` ([gate; up]: split into ours on
loading, joined on saving), rotary positions on the first ``partial_rotary_factor`` of each head
(``rotary_fraction``; Phi-4-mini uses 0.75), and every layer attending through one sliding window when
``sliding_window`` is set (Phi-3-mini-4k: 2047), as in transformers' Phi3Model.

Refused: the scaled rotary of the long-context checkpoints (``rope_type`` ``longrope``, formerly ``su``: the
128k ones, Phi-3.5).
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import llama
from .common import field, task_head_map
from .mapping import Piece
from .rope import rope_from_hf, rope_to_hf

MODEL_TYPE = "phi3"
ARCHITECTURES = {
    "Phi3ForCausalLM": dict(arch="decoder", head="lm"),
    "Phi3Model": dict(arch="decoder", head="none"),
    "Phi3ForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "Phi3ForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX, IGNORED = llama.PREFIX, llama.IGNORED

_LAYER = "model.layers.{}."
KEY_MAP = llama.KEY_MAP | {
    "stack.layers.{}.self_attn.qkv.weight": _LAYER + "self_attn.qkv_proj.weight",
    "stack.layers.{}.mlp.gate.weight": Piece(_LAYER + "mlp.gate_up_proj.weight", 0, 2),
    "stack.layers.{}.mlp.up.weight": Piece(_LAYER + "mlp.gate_up_proj.weight", 1, 2),
}
#: Phi3Config's defaults where they differ from Llama's, for fields config.json leaves out
DEFAULTS = dict(rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=32000, pad_token_id=32000)
MAX_POSITIONS = 4096


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, llama.TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    theta, fraction = rope_from_hf(hf)
    plain = {**DEFAULTS, **hf, "rope_parameters": {"rope_type": "default", "rope_theta": theta}}  # what Llama's
    #   reading takes: the defaults where a field is absent (not null), a rotary object without the fraction
    fields = llama.common_fields(plain, ARCHITECTURES[architecture], max_positions=MAX_POSITIONS)
    fields.update(dropout=field(hf, "resid_pdrop", 0.0), rotary_fraction=fraction)
    return ModelConfig(**fields, bias=False, sliding_window=field(hf, "sliding_window"))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    windows = set(config.layer_windows)  # one window for every layer, or none: some full, some sliding has none
    return llama.common_to_hf(config) | rope_to_hf(config) | dict(
        resid_pdrop=config.dropout, sliding_window=windows.pop() if len(windows) == 1 else None)
