"""BERT (``model_type: bert``): BertModel, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification,
BertForTokenClassification, BertForQuestionAnswering. Post-norm layers, LayerNorm on the embeddings, token
types, learned positions; the separate query/key/value projections are fused into our ``qkv``.

The pieces other BERT-shaped encoders reuse: the body's tensor names under a prefix (``body_key_map``; RoBERTa
and XLM-R keep BERT's body under ``roberta.``), the MLM head's (``mlm_head_map``), the sizes under BERT's
config.json names (``bert_fields``, ``bert_fields_to_hf``) and the config every such encoder shares
(``encoder_config``).
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
    weight_and_bias,
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
    # the pre-training parts that bert-base-uncased's own file (BertForMaskedLM) holds besides its class's
    r"bert\.pooler\.dense\.(weight|bias)", r"cls\.seq_relationship\.(weight|bias)",
)


def body_key_map(prefix: str) -> dict:
    """BERT's embeddings, layers and pooler, under the body's ``prefix`` (``bert.``; ``roberta.``)."""
    layer = prefix + "encoder.layer.{}."
    qkv = tuple(layer + f"attention.self.{p}" for p in ("query", "key", "value"))
    return {
        "embeddings.tokens.weight": prefix + "embeddings.word_embeddings.weight",
        "embeddings.positions.embedding.weight": prefix + "embeddings.position_embeddings.weight",
        "embeddings.token_types.weight": prefix + "embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": prefix + "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": prefix + "embeddings.LayerNorm.bias",
        "stack.layers.{}.self_attn.qkv.weight": (tuple(p + ".weight" for p in qkv), "fuse"),
        "stack.layers.{}.self_attn.qkv.bias": (tuple(p + ".bias" for p in qkv), "fuse"),
        **weight_and_bias("stack.layers.{}.self_attn.out", layer + "attention.output.dense"),
        **weight_and_bias("stack.layers.{}.self_attn_norm", layer + "attention.output.LayerNorm"),
        **weight_and_bias("stack.layers.{}.mlp.up", layer + "intermediate.dense"),
        **weight_and_bias("stack.layers.{}.mlp.down", layer + "output.dense"),
        **weight_and_bias("stack.layers.{}.mlp_norm", layer + "output.LayerNorm"),
        **weight_and_bias("pooler.dense", prefix + "pooler.dense"),
    }


def mlm_head_map(dense: str, norm: str, decoder: str, bias: str) -> dict:
    """Our MLMHead (dense, GELU, LayerNorm, decoder to the vocabulary) under a class's names; ``bias`` is the
    decoder's bias, which BERT and RoBERTa keep as a parameter of the head."""
    return {**weight_and_bias("head.dense", dense), **weight_and_bias("head.layer_norm", norm),
            "head.decoder.weight": decoder + ".weight", "head.decoder.bias": bias}


KEY_MAP = body_key_map(PREFIX) | mlm_head_map(
    "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.decoder",
    "cls.predictions.bias",
) | weight_and_bias("sentence_head.proj", "cls.seq_relationship")
#: the task head's linear layer in each class: sequence and token classifiers, the span's start/end
TASK_HEADS = {"sequence": "classifier", "token": "classifier", "span": "qa_outputs"}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def refuse_mlm_activation(heads: dict[str, Any], activation: str, name: str, architecture: str) -> None:
    """An MLM head that applies the layers' activation (BERT's, DistilBERT's) must be exact GELU, as ours is."""
    if heads["head"] in ("mlm", "pretraining") and activation != "gelu":
        raise CheckpointError(f"config.json: {name} is not supported for {architecture}; trilogy's MLM head uses "
                              "exact GELU ('gelu')")


def encoder_config(hf: dict[str, Any], architecture: str, heads: dict[str, Any], **fields: Any) -> ModelConfig:
    """A BERT-shaped encoder (post-norm layers with biases, LayerNorm on the embeddings, learned positions) of
    class ``architecture``: ``heads`` its ARCHITECTURES entry, the labels from its config.json, and ``fields``
    the sizes and options each family reads from its own config.json names."""
    labels = labels_from_hf(hf)
    if heads["head"] == "question-answering" and labels["num_labels"] != 2:
        raise CheckpointError(f"config.json: {architecture} needs num_labels=2 (a start and an end logit), got "
                              f"{labels['num_labels']}")
    return ModelConfig(
        **heads, **fields, norm="layernorm", norm_bias=True, norm_position="post", final_norm=False,
        gated_mlp=False, bias=True, attention_scale=None, position="learned", embedding_norm=True,
        embedding_scale=1.0, head_scale=1.0, head_bias=False, **labels,
    )


def bert_fields(hf: dict[str, Any], type_vocab_size: int = 2, max_position_embeddings: int = 512,
                pad_token_id: int = 0) -> dict[str, Any]:
    """The ModelConfig fields under BERT's config.json names, which RoBERTa and XLM-R use too (the defaults are
    each config class's); refuses the options trilogy does not reproduce."""
    refuse(hf, "position_embedding_type", ("absolute",), "trilogy's BERT uses absolute learned positions")
    refuse(hf, "is_decoder", (False,), "a BERT encoder is bidirectional")
    refuse(hf, "add_cross_attention", (False,), "a BERT encoder has no cross-attention")
    if field(hf, "type_vocab_size", type_vocab_size) < 1:
        raise CheckpointError("config.json: type_vocab_size must be at least 1")
    return dict(
        vocab_size=field(hf, "vocab_size", required=True), d_model=field(hf, "hidden_size", required=True),
        n_heads=field(hf, "num_attention_heads", required=True),
        n_layers=field(hf, "num_hidden_layers", required=True), d_ff=field(hf, "intermediate_size", required=True),
        max_seq_len=field(hf, "max_position_embeddings", max_position_embeddings),
        norm_eps=field(hf, "layer_norm_eps", 1e-12),
        activation=activation_from_hf(field(hf, "hidden_act", "gelu"), "hidden_act"),
        dropout=field(hf, "hidden_dropout_prob", 0.1), type_vocab_size=field(hf, "type_vocab_size", type_vocab_size),
        tie_embeddings=field(hf, "tie_word_embeddings", True), pad_token_id=field(hf, "pad_token_id", pad_token_id),
    )


def bert_fields_to_hf(config: ModelConfig) -> dict[str, Any]:
    """``bert_fields`` the other way, with the labels of a task head."""
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


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    heads, fields = ARCHITECTURES[architecture], bert_fields(hf)
    refuse_mlm_activation(heads, fields["activation"], f"hidden_act={hf.get('hidden_act')!r}", architecture)
    return encoder_config(hf, architecture, heads, **fields)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return bert_fields_to_hf(config)
