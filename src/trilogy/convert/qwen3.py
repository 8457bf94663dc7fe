"""Qwen3 (``model_type: qwen3``): Qwen3ForCausalLM, Qwen3Model, Qwen3ForSequenceClassification,
Qwen3ForTokenClassification. Qwen2 (see ``qwen2``: its sliding windows too) with an RMSNorm over each head's q
and k before rotary (``qk_norm``: ``q_norm``/``k_norm``, d_head wide) and no q/k/v biases; ``attention_bias``
would put biases on q/k/v and o_proj but not on the MLP, which trilogy's ``bias`` cannot split, so it is refused.
The head size defaults to 128, not hidden_size / heads. Qwen3ForQuestionAnswering keeps its body under
``transformer.``; it is not read or written.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from . import llama, qwen2
from .common import field

MODEL_TYPE = "qwen3"
ARCHITECTURES = {
    "Qwen3ForCausalLM": dict(arch="decoder", head="lm"),
    "Qwen3Model": dict(arch="decoder", head="none"),
    "Qwen3ForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "Qwen3ForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX, IGNORED = llama.PREFIX, llama.IGNORED
QK_NORMS = {f"stack.layers.{{}}.self_attn.{p}_norm.weight": f"model.layers.{{}}.self_attn.{p}_norm.weight" for p in "qk"}
KEY_MAP = llama.KEY_MAP | QK_NORMS
HEAD_DIM = 128  # Qwen3Config's head_dim


def key_map(config: ModelConfig) -> dict:
    return llama.key_map(config) | QK_NORMS


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    if field(hf, "attention_bias", False):
        raise CheckpointError("config.json: attention_bias=true is not supported (biases on q/k/v and o_proj "
                              "without MLP biases)")
    fields = llama.common_fields(hf, ARCHITECTURES[architecture], HEAD_DIM, qwen2.MAX_POSITIONS)
    return ModelConfig(**fields, bias=False, qk_norm=True, **qwen2.sliding_fields(hf))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return llama.common_to_hf(config) | qwen2.sliding_to_hf(config) | dict(attention_bias=False)
