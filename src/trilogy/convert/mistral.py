"""Mistral (``model_type: mistral``): MistralForCausalLM, MistralModel, MistralForSequenceClassification,
MistralForTokenClassification, MistralForQuestionAnswering. Llama without biases (see ``llama``) where every
layer attends through one sliding window when ``sliding_window`` is set (Mistral 7B v0.1: 4096; later ones:
null). MistralModel ignores ``layer_types`` (transformers warns that Ministral's classes read it), and so does
trilogy; a model with some full and some sliding layers is written as Qwen2, not as Mistral.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import llama
from .common import field, task_head_map

MODEL_TYPE = "mistral"
ARCHITECTURES = {
    "MistralForCausalLM": dict(arch="decoder", head="lm"),
    "MistralModel": dict(arch="decoder", head="none"),
    "MistralForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "MistralForTokenClassification": dict(arch="decoder", head="token-classification"),
    "MistralForQuestionAnswering": dict(arch="decoder", head="question-answering"),
}
PREFIX, IGNORED, KEY_MAP = llama.PREFIX, llama.IGNORED, llama.KEY_MAP
TASK_HEADS = llama.TASK_HEADS | {"span": "qa_outputs"}  # its span head reads the body under ``model.``, not Llama's
#   ``transformer.``
MAX_POSITIONS = 4096 * 32  # MistralConfig's defaults
TOKENS = dict(bos_token_id=1, eos_token_id=2)


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP | task_head_map(config, TASK_HEADS)


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    fields = llama.common_fields(hf, ARCHITECTURES[architecture], max_positions=MAX_POSITIONS)
    fields.update({name: hf.get(name, default) for name, default in TOKENS.items()})  # absent, not null
    return ModelConfig(**fields, bias=False, sliding_window=field(hf, "sliding_window"))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    windows = set(config.layer_windows)
    return llama.common_to_hf(config) | dict(sliding_window=windows.pop() if len(windows) == 1 else None)
