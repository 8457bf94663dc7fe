"""GPT-2 (``model_type: gpt2``): GPT2Model, GPT2LMHeadModel, GPT2ForSequenceClassification,
GPT2ForTokenClassification, GPT2ForQuestionAnswering.

Conv1D layers store weights as (in, out), the transpose of nn.Linear; ``c_attn`` already fuses q, k, v in our
order. The sequence classifier reads each row's last real token: transformers finds it as the rightmost token
that is not ``pad_token_id``, trilogy from the attention mask. The two agree with left or right padding as long
as no real token is the pad token (GPT-2 often pads with its end-of-text token, which may also end a real text)
and ``pad_token_id`` is set (without it transformers reads the last position, padding or not).
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

MODEL_TYPE = "gpt2"
ARCHITECTURES = {
    "GPT2LMHeadModel": dict(arch="decoder", head="lm"),
    "GPT2Model": dict(arch="decoder", head="none"),
    "GPT2ForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "GPT2ForTokenClassification": dict(arch="decoder", head="token-classification"),
    "GPT2ForQuestionAnswering": dict(arch="decoder", head="question-answering"),
}
PREFIX = "transformer."  # the body's names inside the head model; the bare GPT2Model saves without it
IGNORED = (r"(transformer\.)?h\.\d+\.attn\.(masked_)?bias",)  # causal-mask buffers of old checkpoints

KEY_MAP = {
    "embeddings.tokens.weight": "transformer.wte.weight",
    "embeddings.positions.embedding.weight": "transformer.wpe.weight",
    "stack.layers.{}.self_attn_norm.weight": "transformer.h.{}.ln_1.weight",
    "stack.layers.{}.self_attn_norm.bias": "transformer.h.{}.ln_1.bias",
    "stack.layers.{}.self_attn.qkv.weight": ("transformer.h.{}.attn.c_attn.weight", "conv1d"),
    "stack.layers.{}.self_attn.qkv.bias": "transformer.h.{}.attn.c_attn.bias",
    "stack.layers.{}.self_attn.out.weight": ("transformer.h.{}.attn.c_proj.weight", "conv1d"),
    "stack.layers.{}.self_attn.out.bias": "transformer.h.{}.attn.c_proj.bias",
    "stack.layers.{}.mlp_norm.weight": "transformer.h.{}.ln_2.weight",
    "stack.layers.{}.mlp_norm.bias": "transformer.h.{}.ln_2.bias",
    "stack.layers.{}.mlp.up.weight": ("transformer.h.{}.mlp.c_fc.weight", "conv1d"),
    "stack.layers.{}.mlp.up.bias": "transformer.h.{}.mlp.c_fc.bias",
    "stack.layers.{}.mlp.down.weight": ("transformer.h.{}.mlp.c_proj.weight", "conv1d"),
    "stack.layers.{}.mlp.down.bias": "transformer.h.{}.mlp.c_proj.bias",
    "stack.final_norm.weight": "transformer.ln_f.weight",
    "stack.final_norm.bias": "transformer.ln_f.bias",
    "lm_head.proj.weight": "lm_head.weight",
}
#: the task head's linear layer in each class (the sequence classifier's ``score`` has no bias)
TASK_HEADS = {"sequence": "score", "token": "classifier", "span": "qa_outputs"}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    refuse(hf, "scale_attn_weights", (True,), "trilogy always scales attention scores by d_head**-0.5")
    refuse(hf, "scale_attn_by_inverse_layer_idx", (False,), "no per-layer attention scaling in trilogy")
    refuse(hf, "add_cross_attention", (False,), "a decoder-only model has no cross-attention")
    d_model = field(hf, "n_embd", required=True)
    return ModelConfig(
        **ARCHITECTURES[architecture],
        vocab_size=field(hf, "vocab_size", required=True), d_model=d_model,
        n_heads=field(hf, "n_head", required=True), n_layers=field(hf, "n_layer", required=True),
        d_ff=field(hf, "n_inner", 4 * d_model), max_seq_len=field(hf, "n_positions", 1024),
        norm="layernorm", norm_eps=field(hf, "layer_norm_epsilon", 1e-5), norm_bias=True, norm_position="pre",
        final_norm=True, activation=activation_from_hf(field(hf, "activation_function", "gelu_new"),
                                                       "activation_function"),
        gated_mlp=False, bias=True, attention_scale=None, dropout=field(hf, "resid_pdrop", 0.1),
        position="learned", type_vocab_size=0, embedding_norm=False, embedding_scale=1.0,
        tie_embeddings=field(hf, "tie_word_embeddings", True), head_scale=1.0, head_bias=False, pooler=False,
        pad_token_id=field(hf, "pad_token_id"), bos_token_id=field(hf, "bos_token_id"),
        eos_token_id=field(hf, "eos_token_id"), **labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return dict(
        vocab_size=config.vocab_size, n_embd=config.d_model, n_head=config.n_heads, n_layer=config.n_layers,
        n_inner=config.d_ff, n_positions=config.max_seq_len, layer_norm_epsilon=config.norm_eps,
        activation_function=ACTIVATIONS_TO_HF[config.activation], resid_pdrop=config.dropout,
        embd_pdrop=config.dropout, attn_pdrop=config.dropout, tie_word_embeddings=config.tie_embeddings,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        **labels_to_hf(config),
    )
