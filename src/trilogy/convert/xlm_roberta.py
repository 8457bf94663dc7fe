"""XLM-RoBERTa (``model_type: xlm-roberta``): XLMRobertaModel, XLMRobertaForMaskedLM,
XLMRobertaForSequenceClassification, XLMRobertaForTokenClassification, XLMRobertaForQuestionAnswering.

RoBERTa under other class names (transformers' own XLM-R classes are RoBERTa's, body under ``roberta.`` too):
a larger vocabulary, nothing else. Everything but the names comes from ``roberta``.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import roberta
from .roberta import IGNORED, PREFIX, config_to_hf, key_map

MODEL_TYPE = "xlm-roberta"
ARCHITECTURES = {name.replace("Roberta", "XLMRoberta"): heads for name, heads in roberta.ARCHITECTURES.items()}
__all__ = ["ARCHITECTURES", "IGNORED", "MODEL_TYPE", "PREFIX", "config_from_hf", "config_to_hf", "key_map"]


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    return roberta.roberta_config(hf, architecture, ARCHITECTURES[architecture])
