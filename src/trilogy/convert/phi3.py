"""Phi-3 (``model_type: phi3``): Phi3ForCausalLM, Phi3Model, Phi3ForSequenceClassification,
Phi3ForTokenClassification. Llama without biases, with q, k, v fused in ``qkv_proj`` (in our order: read as it
is) and the MLP's gate and up fused in ``gate_up_proj`` ([gate; up]: split into ours on loading, joined on
saving), rotary positions on the first ``partial_rotary_factor`` of each head (``rotary_fraction``; Phi-4-mini
uses 0.75).

Refused: the scaled rotary of the long-context checkpoints (``rope_type`` ``longrope``, formerly ``su``), and a
``sliding_window`` shorter than ``max_position_embeddings`` (Phi-3-mini-4k's 2047): trilogy has no
sliding-window attention yet. A window at least as long as the positions is full causal attention up to that
length, as transformers computes it; it is read as such and written back as none.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from . import llama, llama_like
from .common import field, task_head_map
from .mapping import Piece
from .rope import rope_to_hf

MODEL_TYPE = "phi3"
ARCHITECTURES = {
    "Phi3ForCausalLM": dict(arch="decoder", head="lm"),
    "Phi3Model": dict(arch="decoder", head="none"),
    "Phi3ForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "Phi3ForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX = llama.PREFIX
IGNORED = llama.IGNORED

_LAYER = "model.layers.{}."
KEY_MAP = llama.KEY_MAP | {
    "stack.layers.{}.self_attn.qkv.weight": _LAYER + "self_attn.qkv_proj.weight",
    "stack.layers.{}.mlp.gate.weight": Piece(_LAYER + "mlp.gate_up_proj.weight", 0, 2),
    "stack.layers.{}.mlp.up.weight": Piece(_LAYER + "mlp.gate_up_proj.weight", 1, 2),
}
#: Phi3Config's defaults where they differ from Llama's, for fields config.json leaves out
DEFAULTS = dict(rms_norm_eps=1e-5, max_position_embeddings=4096, bos_token_id=1, eos_token_id=32000,
                pad_token_id=32000)


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, llama.TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    window, positions = field(hf, "sliding_window"), field(hf, "max_position_embeddings", 4096)
    if window is not None and window < positions:
        raise CheckpointError(f"config.json: sliding_window={window} is shorter than max_position_embeddings="
                              f"{positions}; trilogy has no sliding-window attention")
    return llama_like.config_from_hf(hf, ARCHITECTURES[architecture], DEFAULTS,
                                     dict(attention_bias=False, mlp_bias=False), partial_rotary=True,
                                     dropout=field(hf, "resid_pdrop", 0.0))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return llama_like.config_to_hf(config, dropped=("attention_bias", "mlp_bias"), **rope_to_hf(config),
                                   resid_pdrop=config.dropout, sliding_window=None)
