"""Gemma 1 (``model_type: gemma``): GemmaForCausalLM, GemmaModel, GemmaForSequenceClassification,
GemmaForTokenClassification. Llama's names and layout without biases (see ``llama``), with four differences:
RMSNorm scales by 1 + weight (``norm_weight_offset``), the embeddings are multiplied by sqrt(d_model) rounded to
their dtype (``embedding_scale``; ``blocks/embedding.py``), the MLP is GeGLU (tanh GELU: transformers reads the
legacy ``hidden_act: gelu`` as tanh GELU too), and ``head_dim`` is set apart from the width (256 by default);
the head is tied by default.

Refused: attention biases (``attention_bias``: Gemma's MLP has none) and ``use_bidirectional_attention``.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import llama
from .common import field, refuse
from .rope import rope_from_hf

MODEL_TYPE = "gemma"
ARCHITECTURES = {
    "GemmaForCausalLM": dict(arch="decoder", head="lm"),
    "GemmaModel": dict(arch="decoder", head="none"),
    "GemmaForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "GemmaForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX, IGNORED = llama.PREFIX, llama.IGNORED
key_map = llama.key_map
#: GemmaConfig's defaults where they differ from Llama's, for fields config.json leaves out
DEFAULTS = dict(num_key_value_heads=16, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True, bos_token_id=2,
                eos_token_id=1, pad_token_id=0)
HEAD_DIM, MAX_POSITIONS = 256, 8192


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    refuse(hf, "attention_bias", (False, None), "Gemma's MLP has no biases, and trilogy's `bias` covers both")
    refuse(hf, "use_bidirectional_attention", (False, None), "trilogy's Gemma is causal")
    theta, _ = rope_from_hf(hf)  # Gemma rotates whole heads, whatever partial_rotary_factor says
    activation = field(hf, "hidden_act", DEFAULTS["hidden_act"])
    given = {**DEFAULTS, **hf, "rope_parameters": {"rope_type": "default", "rope_theta": theta},
             # "gelu" is the released configs' name for tanh GELU, as transformers reads it
             "hidden_act": "gelu_pytorch_tanh" if activation == "gelu" else activation}
    fields = llama.common_fields(given, ARCHITECTURES[architecture], head_dim=HEAD_DIM, max_positions=MAX_POSITIONS)
    fields.update(embedding_scale=field(hf, "hidden_size", required=True) ** 0.5)
    return ModelConfig(**fields, bias=False, norm_weight_offset=1.0)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    tanh = {"hidden_act": "gelu_pytorch_tanh"} if config.activation == "gelu_tanh" else {}  # Gemma's name for it
    return llama.common_to_hf(config) | dict(attention_bias=False, **tanh)
