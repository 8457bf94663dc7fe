"""BERT (``model_type: bert``): BertModel, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification,
BertForTokenClassification, BertForQuestionAnswering. Post-norm layers, LayerNorm on the embeddings, token
types, learned positions; the separate query/key/value projections are fused into our ``qkv``.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .common import (
    ACTIVATIONS_TO_HF,
    activation_from_hf,
    field,
    labels_from_hf,
    labels_to_hf,
    refuse,
    task_head_map,
)

MODEL_TYPE = "bert"
ARCHITECTURES = {
    "BertModel": dict(arch="encoder", head="none", pooler=True),
    "BertForMaskedLM": dict(arch="encoder", head="mlm", pooler=False),
    "BertForPreTraining": dict(arch="encoder", head="pretraining", pooler=True),
    "BertForSequenceClassification": dict(arch="encoder", head="sequence-classification", pooler=True),
    "BertForTokenClassification": dict(arch="encoder", head="token-classification", pooler=False),
    "BertForQuestionAnswering": dict(arch="encoder", head="question-answering", pooler=False),
}
PREFIX = "bert."
IGNORED = (
    r"(bert\.)?embeddings\.position_ids",  # a buffer older checkpoints saved
    r"cls\.predictions\.decoder\.bias",  # the same tensor as cls.predictions.bias
)

_LAYER = "bert.encoder.layer.{}."
_QKV = tuple(_LAYER + f"attention.self.{p}" for p in ("query", "key", "value"))
KEY_MAP = {
    "embeddings.tokens.weight": "bert.embeddings.word_embeddings.weight",
    "embeddings.positions.embedding.weight": "bert.embeddings.position_embeddings.weight",
    "embeddings.token_types.weight": "bert.embeddings.token_type_embeddings.weight",
    "embeddings.norm.weight": "bert.embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "bert.embeddings.LayerNorm.bias",
    "stack.layers.{}.self_attn.qkv.weight": (tuple(p + ".weight" for p in _QKV), "fuse"),
    "stack.layers.{}.self_attn.qkv.bias": (tuple(p + ".bias" for p in _QKV), "fuse"),
    "stack.layers.{}.self_attn.out.weight": _LAYER + "attention.output.dense.weight",
    "stack.layers.{}.self_attn.out.bias": _LAYER + "attention.output.dense.bias",
    "stack.layers.{}.self_attn_norm.weight": _LAYER + "attention.output.LayerNorm.weight",
    "stack.layers.{}.self_attn_norm.bias": _LAYER + "attention.output.LayerNorm.bias",
    "stack.layers.{}.mlp.up.weight": _LAYER + "intermediate.dense.weight",
    "stack.layers.{}.mlp.up.bias": _LAYER + "intermediate.dense.bias",
    "stack.layers.{}.mlp.down.weight": _LAYER + "output.dense.weight",
    "stack.layers.{}.mlp.down.bias": _LAYER + "output.dense.bias",
    "stack.layers.{}.mlp_norm.weight": _LAYER + "output.LayerNorm.weight",
    "stack.layers.{}.mlp_norm.bias": _LAYER + "output.LayerNorm.bias",
    "pooler.dense.weight": "bert.pooler.dense.weight",
    "pooler.dense.bias": "bert.pooler.dense.bias",
    # MLM head (BertForMaskedLM, BertForPreTraining)
    "head.dense.weight": "cls.predictions.transform.dense.weight",
    "head.dense.bias": "cls.predictions.transform.dense.bias",
    "head.layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "head.layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "head.decoder.weight": "cls.predictions.decoder.weight",
    "head.decoder.bias": "cls.predictions.bias",
    "sentence_head.proj.weight": "cls.seq_relationship.weight",
    "sentence_head.proj.bias": "cls.seq_relationship.bias",
}
#: the task head's linear layer in each class: sequence and token classifiers, the span's start/end
TASK_HEADS = {"sequence": "classifier", "token": "classifier", "span": "qa_outputs"}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    refuse(hf, "position_embedding_type", ("absolute",), "trilogy's BERT uses absolute learned positions")
    refuse(hf, "is_decoder", (False,), "a BERT encoder is bidirectional")
    refuse(hf, "add_cross_attention", (False,), "a BERT encoder has no cross-attention")
    activation = activation_from_hf(field(hf, "hidden_act", "gelu"), "hidden_act")
    if field(hf, "type_vocab_size", 2) < 1:
        raise CheckpointError("config.json: type_vocab_size must be at least 1")
    heads, labels = ARCHITECTURES[architecture], labels_from_hf(hf)
    if heads["head"] in ("mlm", "pretraining") and activation != "gelu":
        raise CheckpointError(f"config.json: hidden_act={hf['hidden_act']!r} is not supported for "
                              f"{architecture}; trilogy's MLM head uses exact GELU ('gelu')")
    if heads["head"] == "question-answering" and labels["num_labels"] != 2:
        raise CheckpointError(f"config.json: {architecture} needs num_labels=2 (a start and an end logit), got "
                              f"{labels['num_labels']}")
    return ModelConfig(
        **heads,
        vocab_size=field(hf, "vocab_size", required=True), d_model=field(hf, "hidden_size", required=True),
        n_heads=field(hf, "num_attention_heads", required=True),
        n_layers=field(hf, "num_hidden_layers", required=True), d_ff=field(hf, "intermediate_size", required=True),
        max_seq_len=field(hf, "max_position_embeddings", 512), norm="layernorm",
        norm_eps=field(hf, "layer_norm_eps", 1e-12), norm_bias=True, norm_position="post", final_norm=False,
        activation=activation, gated_mlp=False, bias=True, attention_scale=None,
        dropout=field(hf, "hidden_dropout_prob", 0.1), position="learned",
        type_vocab_size=field(hf, "type_vocab_size", 2), embedding_norm=True, embedding_scale=1.0,
        tie_embeddings=field(hf, "tie_word_embeddings", True), head_scale=1.0, head_bias=False,
        pad_token_id=field(hf, "pad_token_id", 0), **labels,
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if config.type_vocab_size < 1:
        raise CheckpointError("BERT always embeds token types; this model has type_vocab_size=0")
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_attention_heads=config.n_heads,
        num_hidden_layers=config.n_layers, intermediate_size=config.d_ff,
        max_position_embeddings=config.max_seq_len, layer_norm_eps=config.norm_eps,
        hidden_act=ACTIVATIONS_TO_HF[config.activation], hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout, type_vocab_size=config.type_vocab_size,
        position_embedding_type="absolute", tie_word_embeddings=config.tie_embeddings,
        pad_token_id=config.pad_token_id, **labels_to_hf(config),
    )
