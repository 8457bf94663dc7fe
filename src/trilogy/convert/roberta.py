"""RoBERTa (``model_type: roberta``): RobertaModel, RobertaForMaskedLM, RobertaForSequenceClassification,
RobertaForTokenClassification, RobertaForQuestionAnswering.

BERT's body under ``roberta.`` (``bert.body_key_map``) with three differences.

Positions: the table starts past the padding index (position p reads row pad_token_id + 1 + p:
``position_offset``); only real tokens are numbered, so a left-padded row starts at its first real token, and
padding reads row ``pad_token_id`` (``positions_from_mask``). transformers finds the padding as the tokens that
are ``pad_token_id``, trilogy from the attention mask: the two agree, with left or right padding, as long as the
padding is the pad id and no real token is.

Token types: one in RoBERTa's checkpoints (type_vocab_size 1), its row added to every token.

Heads: the MLM head is ``lm_head`` (GELU whatever ``hidden_act`` says). The sequence classifier is
``classifier.dense`` + tanh on the first token, then ``classifier.out_proj``: our pooler and classifier, with no
``roberta.pooler``. (In training transformers also drops the first token out before the dense layer; trilogy
does not.)
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .bert import ARCHITECTURES as BERT_ARCHITECTURES
from .bert import bert_fields, bert_fields_to_hf, body_key_map, encoder_config, mlm_head_map
from .common import field, task_head_map, weight_and_bias

MODEL_TYPE = "roberta"
#: BERT's classes but pre-training (RoBERTa has no next-sentence task)
ARCHITECTURES = {name.replace("Bert", "Roberta"): heads for name, heads in BERT_ARCHITECTURES.items()
                 if heads["head"] != "pretraining"}
PREFIX = "roberta."
IGNORED = (
    r"(roberta\.)?embeddings\.(position_ids|token_type_ids)",  # buffers older checkpoints saved
    r"lm_head\.decoder\.bias",  # the same tensor as lm_head.bias
    r"roberta\.pooler\.dense\.(weight|bias)",  # saved by classes without a pooler too (roberta-base's MLM file)
)

KEY_MAP = body_key_map(PREFIX) | mlm_head_map("lm_head.dense", "lm_head.layer_norm", "lm_head.decoder",
                                              "lm_head.bias")
#: RobertaForSequenceClassification's head: dense + tanh on the first token (our pooler), then out_proj
CLASSIFICATION_HEAD = {**weight_and_bias("pooler.dense", "classifier.dense"),
                       **weight_and_bias("head.proj", "classifier.out_proj")}
TASK_HEADS = {"token": "classifier", "span": "qa_outputs"}


def key_map(config: ModelConfig) -> dict:
    if config.structure.classifier == "sequence":
        return KEY_MAP | CLASSIFICATION_HEAD
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    return roberta_config(hf, architecture, ARCHITECTURES[architecture])


def roberta_config(hf: dict[str, Any], architecture: str, heads: dict[str, Any]) -> ModelConfig:
    """The config of a RoBERTa-shaped class (RoBERTa's, XLM-R's) with ``heads``, its ARCHITECTURES entry."""
    fields = bert_fields(hf, pad_token_id=1)  # RobertaConfig's defaults but the padding index
    offset = fields["pad_token_id"] + 1
    if fields["max_seq_len"] <= offset:
        raise CheckpointError(f"config.json: max_position_embeddings={fields['max_seq_len']} leaves no position "
                              f"past the padding rows (positions start at pad_token_id + 1 = {offset})")
    fields["max_seq_len"] -= offset
    return encoder_config(hf, architecture, heads, **fields, position_offset=offset, positions_from_mask=True,
                          bos_token_id=field(hf, "bos_token_id"), eos_token_id=field(hf, "eos_token_id"))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return bert_fields_to_hf(config) | dict(
        max_position_embeddings=config.position_offset + config.max_seq_len, bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
    )
