"""Llama (``model_type: llama``): LlamaForCausalLM, LlamaModel, LlamaForSequenceClassification,
LlamaForTokenClassification. The decoder-only family by config: RoPE, RMSNorm, SwiGLU, grouped-query attention,
tied or untied head. Separate q/k/v projections are fused into our ``qkv``; the checkpoint's rotary layout
(pairs i, i + D/2) is the one trilogy uses. The sequence classifier's last real token is found as GPT-2's is
(see ``gpt2``). LlamaForQuestionAnswering keeps its body under ``transformer.`` instead of ``model.``; it is not
read or written.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .common import ACTIVATIONS_TO_HF, activation_from_hf, field, labels_from_hf, labels_to_hf, task_head_map

MODEL_TYPE = "llama"
ARCHITECTURES = {
    "LlamaForCausalLM": dict(arch="decoder", head="lm"),
    "LlamaModel": dict(arch="decoder", head="none"),
    "LlamaForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "LlamaForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX = "model."
IGNORED = (r"(model\.)?layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)  # a buffer some old checkpoints hold

_QKV = tuple(f"model.layers.{{}}.self_attn.{p}_proj" for p in "qkv")
KEY_MAP = {
    "embeddings.tokens.weight": "model.embed_tokens.weight",
    "stack.layers.{}.self_attn_norm.weight": "model.layers.{}.input_layernorm.weight",
    "stack.layers.{}.self_attn.qkv.weight": (tuple(p + ".weight" for p in _QKV), "fuse"),
    "stack.layers.{}.self_attn.qkv.bias": (tuple(p + ".bias" for p in _QKV), "fuse"),
    "stack.layers.{}.self_attn.out.weight": "model.layers.{}.self_attn.o_proj.weight",
    "stack.layers.{}.self_attn.out.bias": "model.layers.{}.self_attn.o_proj.bias",
    "stack.layers.{}.mlp_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "stack.layers.{}.mlp.gate.weight": "model.layers.{}.mlp.gate_proj.weight",
    "stack.layers.{}.mlp.gate.bias": "model.layers.{}.mlp.gate_proj.bias",
    "stack.layers.{}.mlp.up.weight": "model.layers.{}.mlp.up_proj.weight",
    "stack.layers.{}.mlp.up.bias": "model.layers.{}.mlp.up_proj.bias",
    "stack.layers.{}.mlp.down.weight": "model.layers.{}.mlp.down_proj.weight",
    "stack.layers.{}.mlp.down.bias": "model.layers.{}.mlp.down_proj.bias",
    "stack.final_norm.weight": "model.norm.weight",
    "lm_head.proj.weight": "lm_head.weight",
}
#: the task head's linear layer in each class (the sequence classifier's has no bias)
TASK_HEADS = {"sequence": "score", "token": "score"}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def rope_theta(hf: dict[str, Any]) -> float:
    """The rotary base from the newer ``rope_parameters`` or the older top-level ``rope_theta``/``rope_scaling``;
    only plain (unscaled) RoPE is reproduced."""
    params = field(hf, "rope_parameters") or field(hf, "rope_scaling") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"config.json: rope_parameters must be an object, got {params!r}")
    if "full_attention" in params and isinstance(params["full_attention"], dict):
        params = params["full_attention"]
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise CheckpointError(f"config.json: rope_type {kind!r} is not supported; trilogy implements plain "
                              "RoPE (rope_type 'default') only")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError("config.json: partial_rotary_factor != 1 is not supported")
    return float(params.get("rope_theta", field(hf, "rope_theta", 10000.0)))


def common_fields(hf: dict[str, Any], architecture: dict[str, str], head_dim: int | None = None,
                  max_positions: int = 2048) -> dict[str, Any]:
    """The ModelConfig fields that Llama and the decoders built like it (Mistral, Qwen2, Qwen3) read alike:
    everything but their biases, q/k norms and sliding windows. ``head_dim`` and ``max_positions`` are the
    class's defaults where config.json has none (``head_dim`` None: d_model // n_heads)."""
    if field(hf, "pretraining_tp", 1) != 1:
        raise CheckpointError("config.json: pretraining_tp != 1 is not supported")
    d_model, n_heads = field(hf, "hidden_size", required=True), field(hf, "num_attention_heads", required=True)
    return dict(
        **architecture,
        vocab_size=field(hf, "vocab_size", required=True), d_model=d_model, n_heads=n_heads,
        n_layers=field(hf, "num_hidden_layers", required=True), d_ff=field(hf, "intermediate_size", required=True),
        max_seq_len=field(hf, "max_position_embeddings", max_positions),
        d_head=field(hf, "head_dim", head_dim or d_model // n_heads),
        n_kv_heads=field(hf, "num_key_value_heads", n_heads), norm="rmsnorm", norm_eps=field(hf, "rms_norm_eps", 1e-6),
        norm_bias=False, norm_position="pre", final_norm=True,
        activation=activation_from_hf(field(hf, "hidden_act", "silu"), "hidden_act"), gated_mlp=True,
        attention_scale=None, dropout=field(hf, "attention_dropout", 0.0), position="rope",
        rope_theta=rope_theta(hf), type_vocab_size=0, embedding_norm=False, embedding_scale=1.0,
        tie_embeddings=field(hf, "tie_word_embeddings", False), head_scale=1.0, head_bias=False, pooler=False,
        pad_token_id=field(hf, "pad_token_id"), bos_token_id=field(hf, "bos_token_id"),
        eos_token_id=field(hf, "eos_token_id"), **labels_from_hf(hf),
    )


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    attention_bias, mlp_bias = field(hf, "attention_bias", False), field(hf, "mlp_bias", False)
    if attention_bias != mlp_bias:
        raise CheckpointError(f"config.json: attention_bias={attention_bias} with mlp_bias={mlp_bias} is not "
                              "supported; trilogy's `bias` covers both")
    return ModelConfig(**common_fields(hf, ARCHITECTURES[architecture]), bias=attention_bias)


def common_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The config.json fields of ``common_fields``."""
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads, head_dim=config.d_head, num_hidden_layers=config.n_layers,
        intermediate_size=config.d_ff, max_position_embeddings=config.max_seq_len, rms_norm_eps=config.norm_eps,
        hidden_act=ACTIVATIONS_TO_HF[config.activation], attention_dropout=config.dropout,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        tie_word_embeddings=config.tie_embeddings, pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, **labels_to_hf(config),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return common_to_hf(config) | dict(attention_bias=config.bias, mlp_bias=config.bias)
