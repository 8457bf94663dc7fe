"""ModernBERT (``model_type: modernbert``): ModernBertModel, ModernBertForMaskedLM,
ModernBertForSequenceClassification, ModernBertForTokenClassification, ModernBertForQuestionAnswering.

A pre-norm encoder of BERT's shape, with:

- rotary positions, a base per kind of layer: ``global_rope_theta`` (160,000) for the full-attention layers,
  ``local_rope_theta`` (10,000: ``rope_theta_local``) for the sliding ones; newer configs give both in
  ``rope_parameters`` per layer type;
- every ``global_attn_every_n_layers``-th layer (3; from layer 0) attends to the whole input, the others to a
  bidirectional window of ``local_attention`` tokens: a token sees the tokens up to ``local_attention // 2``
  positions away on each side (our ``sliding_window`` is one more: it counts the keys less than it away);
  ``layer_types`` when config.json has it;
- GeGLU with the gate and up projections fused in ``Wi`` ([ours: gate; up], split on loading, joined on
  saving), q/k/v fused in ``Wqkv`` as ours are;
- LayerNorm after the embeddings (``embedding_norm``), none before layer 0's attention
  (``first_attention_norm=False``: transformers' ``attn_norm`` is an Identity there), a final norm;
- no biases but the decoder's and the classifier's (``attention_bias``, ``mlp_bias``, ``classifier_bias``:
  trilogy's ``bias`` covers the three, so they must agree where the class has a head; ``norm_bias``);
- its ``head``, dense + ``classifier_activation`` + norm, before every output: the MLM head is BERT's (dense,
  GELU, LayerNorm, then the decoder with a bias, tied to the embeddings); the classifiers read through it
  (``head_transform``): the sequence classifier on the first token (``classifier_pooling: cls``) or the mean of
  the real tokens (``mean``: ``pooling``), the token and span classifiers on every token.

Refused: rope types other than default, ``decoder_bias: false`` and an MLM ``classifier_activation`` other than
GELU (BERT's MLM head has both), biases that disagree, a classifier pooling other than cls and mean.
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
    weight_and_bias,
)
from .layer_types import layer_attention_from_hf, layer_types_to_hf, sliding_fields
from .mapping import Piece

MODEL_TYPE = "modernbert"
ARCHITECTURES = {
    "ModernBertModel": dict(arch="encoder", head="none"),
    "ModernBertForMaskedLM": dict(arch="encoder", head="mlm"),
    "ModernBertForSequenceClassification": dict(arch="encoder", head="sequence-classification"),
    "ModernBertForTokenClassification": dict(arch="encoder", head="token-classification"),
    "ModernBertForQuestionAnswering": dict(arch="encoder", head="question-answering"),
}
PREFIX = "model."
IGNORED: tuple[str, ...] = ()

_LAYER = "model.layers.{}."
KEY_MAP = {
    "embeddings.tokens.weight": "model.embeddings.tok_embeddings.weight",
    **weight_and_bias("embeddings.norm", "model.embeddings.norm"),
    **weight_and_bias("stack.layers.{}.self_attn_norm", _LAYER + "attn_norm"),
    **weight_and_bias("stack.layers.{}.self_attn.qkv", _LAYER + "attn.Wqkv"),
    **weight_and_bias("stack.layers.{}.self_attn.out", _LAYER + "attn.Wo"),
    **weight_and_bias("stack.layers.{}.mlp_norm", _LAYER + "mlp_norm"),
    **{f"stack.layers.{{}}.mlp.{ours}.{kind}": Piece(f"{_LAYER}mlp.Wi.{kind}", index, 2)
       for index, ours in enumerate(("gate", "up")) for kind in ("weight", "bias")},
    **weight_and_bias("stack.layers.{}.mlp.down", _LAYER + "mlp.Wo"),
    **weight_and_bias("stack.final_norm", "model.final_norm"),
}
#: each head's layers under the class's names: ModernBERT's ``head`` is our MLM head's dense and norm, the
#: pooler (sequences) or the classifier's transform (tokens, spans)
HEADS = {
    "mlm": {**weight_and_bias("head.dense", "head.dense"), **weight_and_bias("head.layer_norm", "head.norm"),
            **weight_and_bias("head.decoder", "decoder")},
    "sequence": {**weight_and_bias("pooler.dense", "head.dense"), **weight_and_bias("pooler.norm", "head.norm"),
                 **weight_and_bias("head.proj", "classifier")},
    "transformed": {**weight_and_bias("head.transform.dense", "head.dense"),
                    **weight_and_bias("head.transform.norm", "head.norm"), **weight_and_bias("head.proj", "classifier")},
}
#: ModernBertConfig's defaults, for fields config.json leaves out
THETA, LOCAL_THETA, LOCAL_ATTENTION, GLOBAL_EVERY, MAX_POSITIONS = 160_000.0, 10_000.0, 128, 3, 8192
POOLINGS = {"cls": "first", "mean": "mean"}
CLASSIFIER_ACTIVATIONS = ("gelu", "relu", "tanh")  # ModernBERT's head activations trilogy's pooler has


def key_map(config: ModelConfig) -> dict:
    structure = config.structure
    head = structure.vocabulary or ("sequence" if structure.summary == "pooler" else "transformed")
    return KEY_MAP | (HEADS[head] if structure.vocabulary or structure.classifier else {})


def rope_fields(hf: dict[str, Any]) -> dict[str, float]:
    """``rope_theta`` and ``rope_theta_local``: per layer type from ``rope_parameters``, else from the older
    ``global_rope_theta`` and ``local_rope_theta``; ``rope_scaling`` (which ModernBERT applies to both) refused."""
    params = field(hf, "rope_parameters") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"config.json: rope_parameters must be an object, got {params!r}")
    scaling = field(hf, "rope_scaling") or {}
    full, local = (dict(params.get(kind) or {}) | scaling for kind in ("full_attention", "sliding_attention"))
    for rope in (full, local):
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind != "default":
            raise CheckpointError(f"config.json: rope_type {kind!r} is not supported; trilogy reads ModernBERT's "
                                  "plain RoPE (rope_type 'default') only")
    return dict(rope_theta=float(full.get("rope_theta", field(hf, "global_rope_theta", THETA))),
                rope_theta_local=float(local.get("rope_theta", field(hf, "local_rope_theta", LOCAL_THETA))))


def head_fields(hf: dict[str, Any], head: str, bias: bool) -> dict[str, Any]:
    """The fields of the class's head (none for ModernBertModel), and the refusals that only a head makes."""
    if head == "none":
        return {}
    if field(hf, "classifier_bias", False) != bias:
        raise CheckpointError(f"config.json: classifier_bias={field(hf, 'classifier_bias', False)} with "
                              f"attention_bias={bias} is not supported; trilogy's `bias` covers the head's dense "
                              "layer too")
    activation = field(hf, "classifier_activation", "gelu")
    if head == "mlm":
        refuse(hf, "decoder_bias", (True, None), "BERT's MLM decoder has a bias")
        refuse(hf, "classifier_activation", ("gelu", None), "BERT's MLM head applies GELU")
        return {}
    if activation not in CLASSIFIER_ACTIVATIONS:
        raise CheckpointError(f"config.json: classifier_activation={activation!r} is not supported; supported: "
                              f"{', '.join(CLASSIFIER_ACTIVATIONS)}")
    pooling = field(hf, "classifier_pooling", "cls")
    if head == "sequence-classification" and pooling not in POOLINGS:
        raise CheckpointError(f"config.json: classifier_pooling={pooling!r} is not supported; supported: "
                              f"{', '.join(POOLINGS)}")
    return dict(pooler_activation=activation, pooling=POOLINGS.get(pooling, "first"), head_transform=True)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    attention_bias, mlp_bias = field(hf, "attention_bias", False), field(hf, "mlp_bias", False)
    if attention_bias != mlp_bias:
        raise CheckpointError(f"config.json: attention_bias={attention_bias} with mlp_bias={mlp_bias} is not "
                              "supported; trilogy's `bias` covers both")
    heads = ARCHITECTURES[architecture]
    every = field(hf, "global_attn_every_n_layers", GLOBAL_EVERY)
    kinds = layer_attention_from_hf(hf, lambda i: i % every != 0)
    window = field(hf, "local_attention", LOCAL_ATTENTION) // 2 + 1  # |query - key| <= local_attention // 2
    return ModelConfig(
        **heads, vocab_size=field(hf, "vocab_size", required=True), d_model=field(hf, "hidden_size", required=True),
        n_heads=field(hf, "num_attention_heads", required=True), n_layers=field(hf, "num_hidden_layers",
                                                                                required=True),
        d_ff=field(hf, "intermediate_size", required=True), max_seq_len=field(hf, "max_position_embeddings",
                                                                              MAX_POSITIONS),
        norm="layernorm", norm_eps=field(hf, "norm_eps", 1e-5), norm_bias=field(hf, "norm_bias", False),
        norm_position="pre", final_norm=True, first_attention_norm=False, embedding_norm=True,
        activation=activation_from_hf(field(hf, "hidden_activation", "gelu"), "hidden_activation"), gated_mlp=True,
        bias=attention_bias, position="rope", **rope_fields(hf), **sliding_fields(kinds, window),
        dropout=field(hf, "attention_dropout", 0.0), tie_embeddings=field(hf, "tie_word_embeddings", True),
        pad_token_id=field(hf, "pad_token_id"), bos_token_id=field(hf, "bos_token_id"),
        eos_token_id=field(hf, "eos_token_id"), **head_fields(hf, heads["head"], attention_bias),
        **labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """ModernBertConfig's fields of ``config``.

    Raises:
        CheckpointError: a width that is not heads * an integer, which ModernBERT requires.
    """
    if config.d_model % config.n_heads:
        raise CheckpointError(f"d_model={config.d_model} is not a multiple of n_heads={config.n_heads}, which "
                              "ModernBERT requires")
    window = config.sliding_window
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_attention_heads=config.n_heads,
        num_hidden_layers=config.n_layers, intermediate_size=config.d_ff, max_position_embeddings=config.max_seq_len,
        norm_eps=config.norm_eps, norm_bias=config.norm_bias, hidden_activation=ACTIVATIONS_TO_HF[config.activation],
        attention_bias=config.bias, mlp_bias=config.bias, classifier_bias=config.bias, decoder_bias=True,
        classifier_activation="gelu" if config.structure.vocabulary == "mlm" else config.pooler_activation,
        classifier_pooling={ours: theirs for theirs, ours in POOLINGS.items()}[config.pooling],
        local_attention=2 * (window - 1) if window is not None else LOCAL_ATTENTION,
        layer_types=layer_types_to_hf(config),
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
                         "sliding_attention": {"rope_type": "default",
                                               "rope_theta": config.rope_theta_local or config.rope_theta}},
        attention_dropout=config.dropout, tie_word_embeddings=config.tie_embeddings,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        cls_token_id=config.bos_token_id, sep_token_id=config.eos_token_id, **labels_to_hf(config),
    )
