"""DistilBERT (``model_type: distilbert``): DistilBertModel, DistilBertForMaskedLM,
DistilBertForSequenceClassification, DistilBertForTokenClassification, DistilBertForQuestionAnswering.

BERT's layers under other names (``q_lin``/``k_lin``/``v_lin``/``out_lin``, ``sa_layer_norm``, ``ffn.lin1``/
``lin2``, ``output_layer_norm``), no token types, no pooler, LayerNorm eps fixed at 1e-12. The MLM head is
``vocab_transform`` (with the layers' activation, which must so be GELU) / ``vocab_layer_norm`` /
``vocab_projector``; the sequence classifier is ``pre_classifier`` + ReLU on the first token (our pooler with
``pooler_activation="relu"``), then ``classifier``. ``sinusoidal_pos_embds`` only initialises the position
table, which the checkpoint holds like any other, so it loads as learned positions and is written back as
read. transformers applies no dropout on the attention output and its own rates before the classifiers
(``seq_classif_dropout``, ``qa_dropout``); trilogy uses its ``dropout`` everywhere (training only).
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from .bert import encoder_config, mlm_head_map, refuse_mlm_activation
from .common import ACTIVATIONS_TO_HF, activation_from_hf, field, labels_to_hf, task_head_map, weight_and_bias

MODEL_TYPE = "distilbert"
ARCHITECTURES = {
    "DistilBertModel": dict(arch="encoder", head="none", pooler=False),
    "DistilBertForMaskedLM": dict(arch="encoder", head="mlm", pooler=False),
    "DistilBertForSequenceClassification": dict(arch="encoder", head="sequence-classification", pooler=True),
    "DistilBertForTokenClassification": dict(arch="encoder", head="token-classification", pooler=False),
    "DistilBertForQuestionAnswering": dict(arch="encoder", head="question-answering", pooler=False),
}
PREFIX = "distilbert."
IGNORED = (r"(distilbert\.)?embeddings\.position_ids",)  # a buffer older checkpoints saved
LAYER_NORM_EPS = 1e-12  # every LayerNorm of transformers' DistilBERT, whatever config.json says

_LAYER = "distilbert.transformer.layer.{}."
_QKV = tuple(_LAYER + f"attention.{p}_lin" for p in "qkv")
KEY_MAP = {
    "embeddings.tokens.weight": "distilbert.embeddings.word_embeddings.weight",
    "embeddings.positions.embedding.weight": "distilbert.embeddings.position_embeddings.weight",
    **weight_and_bias("embeddings.norm", "distilbert.embeddings.LayerNorm"),
    "stack.layers.{}.self_attn.qkv.weight": (tuple(p + ".weight" for p in _QKV), "fuse"),
    "stack.layers.{}.self_attn.qkv.bias": (tuple(p + ".bias" for p in _QKV), "fuse"),
    **weight_and_bias("stack.layers.{}.self_attn.out", _LAYER + "attention.out_lin"),
    **weight_and_bias("stack.layers.{}.self_attn_norm", _LAYER + "sa_layer_norm"),
    **weight_and_bias("stack.layers.{}.mlp.up", _LAYER + "ffn.lin1"),
    **weight_and_bias("stack.layers.{}.mlp.down", _LAYER + "ffn.lin2"),
    **weight_and_bias("stack.layers.{}.mlp_norm", _LAYER + "output_layer_norm"),
    # the sequence classifier's dense + ReLU on the first token
    **weight_and_bias("pooler.dense", "pre_classifier"),
} | mlm_head_map("vocab_transform", "vocab_layer_norm", "vocab_projector", "vocab_projector.bias")
TASK_HEADS = {"sequence": "classifier", "token": "classifier", "span": "qa_outputs"}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    heads = ARCHITECTURES[architecture]
    activation = activation_from_hf(field(hf, "activation", "gelu"), "activation")
    refuse_mlm_activation(heads, activation, f"activation={hf.get('activation')!r}", architecture)
    config = encoder_config(
        hf, architecture, heads, vocab_size=field(hf, "vocab_size", required=True),
        d_model=field(hf, "dim", required=True), n_heads=field(hf, "n_heads", required=True),
        n_layers=field(hf, "n_layers", required=True), d_ff=field(hf, "hidden_dim", required=True),
        max_seq_len=field(hf, "max_position_embeddings", 512), norm_eps=LAYER_NORM_EPS, activation=activation,
        dropout=field(hf, "dropout", 0.1), type_vocab_size=0, tie_embeddings=field(hf, "tie_word_embeddings", True),
        pad_token_id=field(hf, "pad_token_id", 0), pooler_activation="relu",
    )
    if field(hf, "sinusoidal_pos_embds", False):
        config.extra["sinusoidal_pos_embds"] = True  # kept to be written back
    return config


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return dict(
        vocab_size=config.vocab_size, dim=config.d_model, n_heads=config.n_heads, n_layers=config.n_layers,
        hidden_dim=config.d_ff, max_position_embeddings=config.max_seq_len,
        sinusoidal_pos_embds=bool(config.extra.get("sinusoidal_pos_embds", False)),
        activation=ACTIVATIONS_TO_HF[config.activation], dropout=config.dropout, attention_dropout=config.dropout,
        tie_word_embeddings=config.tie_embeddings, pad_token_id=config.pad_token_id, **labels_to_hf(config),
    )
