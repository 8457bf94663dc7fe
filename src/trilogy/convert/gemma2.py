"""Gemma 2 (``model_type: gemma2``): Gemma2ForCausalLM, Gemma2Model, Gemma2ForSequenceClassification,
Gemma2ForTokenClassification. Gemma (see ``gemma``) with:

- a norm on each branch's output too (``sandwich_norm``): Gemma 2's ``post_attention_layernorm`` norms the
  attention's output, and the MLP sits between ``pre_feedforward_layernorm`` (our ``mlp_norm``) and
  ``post_feedforward_layernorm``;
- queries scaled by ``query_pre_attn_scalar ** -0.5`` (``attention_scale``), not by ``head_dim ** -0.5``;
- soft-capped attention scores and logits (``attn_logit_softcapping``, ``final_logit_softcapping``: our
  ``attention_softcap``, ``logit_softcap``; null turns one off);
- sliding-window layers (``sliding_window``, ``layer_attention``) as ``layer_types`` says, or, in configs
  written without it, every other layer from the first (Gemma2Config's rule);
- the MLP's activation in ``hidden_activation`` (Llama's ``hidden_act`` is not read), exact GELU for "gelu".

Refused: sliding layers with ``sliding_window`` null (transformers fails on them), attention biases and
``use_bidirectional_attention`` (as Gemma's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from . import gemma, llama
from .common import field
from .layer_types import layer_attention_from_hf, layer_types_to_hf, sliding_fields
from .rope import rope_from_hf

MODEL_TYPE = "gemma2"
ARCHITECTURES = {
    "Gemma2ForCausalLM": dict(arch="decoder", head="lm"),
    "Gemma2Model": dict(arch="decoder", head="none"),
    "Gemma2ForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "Gemma2ForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX, IGNORED = llama.PREFIX, llama.IGNORED
#: the norms Gemma does not have; its ``post_attention_layernorm`` is Gemma 2's attention output norm
SANDWICH_NORMS = {
    "stack.layers.{}.self_attn_post_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "stack.layers.{}.mlp_norm.weight": "model.layers.{}.pre_feedforward_layernorm.weight",
    "stack.layers.{}.mlp_post_norm.weight": "model.layers.{}.post_feedforward_layernorm.weight",
}
KEY_MAP = llama.KEY_MAP | SANDWICH_NORMS
#: Gemma2Config's defaults where they differ from Llama's, and those of the fields Gemma 2 adds, for fields
#: config.json leaves out
DEFAULTS = dict(num_key_value_heads=4, tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0,
                hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256, sliding_window=4096,
                attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
MAX_POSITIONS = 8192


def key_map(config: ModelConfig) -> dict:
    return llama.key_map(config) | SANDWICH_NORMS


def gemma2_fields(hf: dict[str, Any], architecture: dict[str, str], defaults: dict[str, Any], theta: float,
                  max_positions: int, sliding: Callable[[int], bool]) -> dict[str, Any]:
    """The ModelConfig fields Gemma 2 and Gemma 3 read alike: Gemma's, plus sandwich norms, the query scale,
    the soft-caps and the layers' windows (``sliding(i)``: whether layer i slides, without ``layer_types``);
    ``defaults``: the config class's, for the fields config.json leaves out."""
    activation = field(hf, "hidden_activation", defaults["hidden_activation"])
    fields = gemma.gemma_fields(hf, architecture, defaults, activation, theta, max_positions)

    def nullable(name: str) -> Any:  # config.json's value, null included (no window, no cap), else the default
        return hf.get(name, defaults[name])

    scalar = field(hf, "query_pre_attn_scalar", defaults["query_pre_attn_scalar"])
    return fields | dict(sandwich_norm=True, attention_scale=float(scalar) ** -0.5,
                         attention_softcap=nullable("attn_logit_softcapping"),
                         logit_softcap=nullable("final_logit_softcapping"),
                         **sliding_fields(layer_attention_from_hf(hf, sliding), nullable("sliding_window")))


def gemma2_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The config.json fields of ``gemma2_fields``.

    Raises:
        CheckpointError: a width that is not heads * an integer, which Gemma2Config refuses. (A query scale that
            is not 1 / sqrt(an integer) is written rounded to one, and ``hf.config_to_hf``'s round trip finds it.)
    """
    if config.d_model % config.n_heads:
        raise CheckpointError(f"d_model={config.d_model} is not a multiple of n_heads={config.n_heads}, which "
                              "Gemma 2's and 3's configs require")
    hf = gemma.gemma_to_hf(config)
    activation = hf.pop("hidden_act")
    return hf | dict(hidden_activation=activation, query_pre_attn_scalar=round(config.scale**-2),
                     attn_logit_softcapping=config.attention_softcap, final_logit_softcapping=config.logit_softcap,
                     sliding_window=config.sliding_window or DEFAULTS["sliding_window"],  # read even without
                     #   sliding layers
                     layer_types=layer_types_to_hf(config))


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    theta, _ = rope_from_hf(hf)
    return ModelConfig(**gemma2_fields(hf, ARCHITECTURES[architecture], DEFAULTS, theta, MAX_POSITIONS,
                                       sliding=lambda i: i % 2 == 0))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return gemma2_to_hf(config)
