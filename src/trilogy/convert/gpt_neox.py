"""GPT-NeoX and Pythia (``model_type: gpt_neox``): GPTNeoXForCausalLM, GPTNeoXModel,
GPTNeoXForSequenceClassification, GPTNeoXForTokenClassification, GPTNeoXForQuestionAnswering.

A pre-norm LayerNorm decoder with biases, a GELU MLP and an untied head (``embed_out``), where trilogy needs
three block options: rotary positions on the first ``rotary_pct`` of each head only (``rotary_fraction``), the
attention and the MLP both reading the layer's input (``parallel_residual``, unless ``use_parallel_residual``
is false), and q, k, v fused head by head: ``query_key_value`` holds [q_h, k_h, v_h] for each head h, which the
``per_head_qkv`` transform turns into our [q, k, v] and back. The sequence classifier reads each row's last real
token as GPT-2's does (see ``gpt2``).
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from .common import (
    ACTIVATIONS_TO_HF,
    activation_from_hf,
    field,
    labels_from_hf,
    labels_to_hf,
    refuse,
    task_head_map,
)
from .rope import rope_from_hf, rope_to_hf

MODEL_TYPE = "gpt_neox"
ARCHITECTURES = {
    "GPTNeoXForCausalLM": dict(arch="decoder", head="lm"),
    "GPTNeoXModel": dict(arch="decoder", head="none"),
    "GPTNeoXForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "GPTNeoXForTokenClassification": dict(arch="decoder", head="token-classification"),
    "GPTNeoXForQuestionAnswering": dict(arch="decoder", head="question-answering"),
}
PREFIX = "gpt_neox."  # the body's names inside the head models; the bare GPTNeoXModel saves without it
#: buffers of older checkpoints: the causal mask, its fill value and the rotary frequencies
IGNORED = (r"(gpt_neox\.)?layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)",)

_LAYER = "gpt_neox.layers.{}."
KEY_MAP = {
    "embeddings.tokens.weight": "gpt_neox.embed_in.weight",
    "stack.layers.{}.self_attn_norm.weight": _LAYER + "input_layernorm.weight",
    "stack.layers.{}.self_attn_norm.bias": _LAYER + "input_layernorm.bias",
    "stack.layers.{}.self_attn.qkv.weight": (_LAYER + "attention.query_key_value.weight", "per_head_qkv"),
    "stack.layers.{}.self_attn.qkv.bias": (_LAYER + "attention.query_key_value.bias", "per_head_qkv"),
    "stack.layers.{}.self_attn.out.weight": _LAYER + "attention.dense.weight",
    "stack.layers.{}.self_attn.out.bias": _LAYER + "attention.dense.bias",
    "stack.layers.{}.mlp_norm.weight": _LAYER + "post_attention_layernorm.weight",
    "stack.layers.{}.mlp_norm.bias": _LAYER + "post_attention_layernorm.bias",
    "stack.layers.{}.mlp.up.weight": _LAYER + "mlp.dense_h_to_4h.weight",
    "stack.layers.{}.mlp.up.bias": _LAYER + "mlp.dense_h_to_4h.bias",
    "stack.layers.{}.mlp.down.weight": _LAYER + "mlp.dense_4h_to_h.weight",
    "stack.layers.{}.mlp.down.bias": _LAYER + "mlp.dense_4h_to_h.bias",
    "stack.final_norm.weight": "gpt_neox.final_layer_norm.weight",
    "stack.final_norm.bias": "gpt_neox.final_layer_norm.bias",
    "lm_head.proj.weight": "embed_out.weight",  # transformers names it lm_head in memory, embed_out in files
}
#: the task head's linear layer in each class (the sequence classifier's ``score`` has no bias)
TASK_HEADS = {"sequence": "score", "token": "classifier", "span": "qa_outputs"}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    refuse(hf, "attention_bias", (True,), "trilogy's `bias` covers the attention and the MLP, and GPT-NeoX's "
                                          "MLP always has biases")
    theta, fraction = rope_from_hf(hf, theta_fields=("rotary_emb_base", "rope_theta"),
                                   fraction_fields=("rotary_pct", "partial_rotary_factor"), default_fraction=0.25)
    return ModelConfig(
        **ARCHITECTURES[architecture],
        vocab_size=field(hf, "vocab_size", required=True), d_model=field(hf, "hidden_size", required=True),
        n_heads=field(hf, "num_attention_heads", required=True),
        n_layers=field(hf, "num_hidden_layers", required=True), d_ff=field(hf, "intermediate_size", required=True),
        max_seq_len=field(hf, "max_position_embeddings", 2048), norm="layernorm",
        norm_eps=field(hf, "layer_norm_eps", 1e-5), norm_bias=True, norm_position="pre", final_norm=True,
        parallel_residual=bool(field(hf, "use_parallel_residual", True)),
        activation=activation_from_hf(field(hf, "hidden_act", "gelu"), "hidden_act"), gated_mlp=False, bias=True,
        attention_scale=None, dropout=field(hf, "hidden_dropout", 0.0), position="rope", rope_theta=theta,
        rotary_fraction=fraction, type_vocab_size=0, embedding_norm=False, embedding_scale=1.0,
        tie_embeddings=field(hf, "tie_word_embeddings", False), head_scale=1.0, head_bias=False, pooler=False,
        pad_token_id=field(hf, "pad_token_id"), bos_token_id=field(hf, "bos_token_id"),
        eos_token_id=field(hf, "eos_token_id"), **labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """GPT-NeoX's config.json for ``config``: always with biases (a model without them differs in ``bias``)."""
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_attention_heads=config.n_heads,
        num_hidden_layers=config.n_layers, intermediate_size=config.d_ff,
        max_position_embeddings=config.max_seq_len, layer_norm_eps=config.norm_eps,
        hidden_act=ACTIVATIONS_TO_HF[config.activation], use_parallel_residual=config.parallel_residual,
        attention_bias=True, hidden_dropout=config.dropout, attention_dropout=config.dropout,
        **rope_to_hf(config), tie_word_embeddings=config.tie_embeddings, pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, **labels_to_hf(config),
    )
