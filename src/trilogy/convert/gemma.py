"""Gemma 1 (``model_type: gemma``): GemmaForCausalLM, GemmaModel, GemmaForSequenceClassification,
GemmaForTokenClassification. Llama's names and layout, with four differences: RMSNorm scales by 1 + weight
(``norm_weight_offset``), the embeddings are multiplied by sqrt(d_model) rounded to their dtype
(``embedding_scale``; ``blocks/embedding.py``), the MLP is GeGLU (tanh GELU: transformers reads the legacy
``hidden_act: gelu`` as tanh GELU too), and ``head_dim`` is set apart from the width; the head is tied.

Refused: attention biases (Gemma's MLP has none, and trilogy's ``bias`` covers both) and
``use_bidirectional_attention``.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import llama, llama_like
from .common import field, refuse

MODEL_TYPE = "gemma"
ARCHITECTURES = {
    "GemmaForCausalLM": dict(arch="decoder", head="lm"),
    "GemmaModel": dict(arch="decoder", head="none"),
    "GemmaForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "GemmaForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX = llama.PREFIX
IGNORED = llama.IGNORED
key_map = llama.key_map
#: GemmaConfig's defaults where they differ from Llama's, for fields config.json leaves out
DEFAULTS = dict(head_dim=256, num_key_value_heads=16, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True,
                bos_token_id=2, eos_token_id=1, pad_token_id=0)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    refuse(hf, "use_bidirectional_attention", (False, None), "trilogy's Gemma is causal")
    activation = field(hf, "hidden_act", DEFAULTS["hidden_act"])
    fixed = dict(mlp_bias=False, hidden_act="gelu_pytorch_tanh" if activation == "gelu" else activation)
    d_model = field(hf, "hidden_size", required=True)
    return llama_like.config_from_hf(hf, ARCHITECTURES[architecture], DEFAULTS, fixed, partial_rotary=False,
                                     norm_weight_offset=1.0, embedding_scale=d_model**0.5)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    tanh = {"hidden_act": "gelu_pytorch_tanh"} if config.activation == "gelu_tanh" else {}  # Gemma's name for it
    # no biases: written so, a model with biases differs from its reading in ``bias``
    return llama_like.config_to_hf(config, dropped=("mlp_bias",), attention_bias=False, **tanh)
