"""Qwen2 (``model_type: qwen2``): Qwen2ForCausalLM, Qwen2Model, Qwen2ForSequenceClassification,
Qwen2ForTokenClassification. Llama (see ``llama``) with biases on the q/k/v projections alone (``qkv_bias``;
o_proj and the MLP have none) and optional sliding-window layers. Qwen2ForQuestionAnswering keeps its body under
``transformer.``, as Llama's does; it is not read or written.

Sliding windows, as ``Qwen2Config`` reads them: ``sliding_window`` counts only with ``use_sliding_window``;
``layer_types`` names each layer ``full_attention`` or ``sliding_attention``, and without it the layers from
``max_window_layers`` on slide. A sliding layer with no window (transformers fails on it) is refused.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from . import llama
from .common import field

MODEL_TYPE = "qwen2"
ARCHITECTURES = {
    "Qwen2ForCausalLM": dict(arch="decoder", head="lm"),
    "Qwen2Model": dict(arch="decoder", head="none"),
    "Qwen2ForSequenceClassification": dict(arch="decoder", head="sequence-classification"),
    "Qwen2ForTokenClassification": dict(arch="decoder", head="token-classification"),
}
PREFIX, IGNORED, KEY_MAP = llama.PREFIX, llama.IGNORED, llama.KEY_MAP
key_map = llama.key_map
MAX_POSITIONS = 32768  # Qwen2Config's max_position_embeddings

#: config.json's layer types <-> ModelConfig.layer_attention's
LAYER_TYPES = {"full_attention": "full", "sliding_attention": "sliding"}


def sliding_fields(hf: dict[str, Any]) -> dict[str, Any]:
    """``sliding_window`` and ``layer_attention`` as Qwen2Config (and Qwen3Config) derive them."""
    window = field(hf, "sliding_window") if field(hf, "use_sliding_window", False) else None
    n_layers = field(hf, "num_hidden_layers", required=True)
    types = field(hf, "layer_types")
    if types is None:
        first_sliding = field(hf, "max_window_layers", 28)
        kinds = tuple("sliding" if window is not None and i >= first_sliding else "full" for i in range(n_layers))
    else:
        unknown = sorted({str(t) for t in types} - set(LAYER_TYPES))
        if unknown:
            raise CheckpointError(f"config.json: layer_types {', '.join(unknown)} are not supported; supported: "
                                  f"{', '.join(LAYER_TYPES)}")
        kinds = tuple(LAYER_TYPES[t] for t in types)
        if window is None and "sliding" in kinds:
            raise CheckpointError("config.json: layer_types has sliding_attention layers but no sliding window "
                                  "(sliding_window with use_sliding_window true)")
    if "sliding" not in kinds:
        return dict(sliding_window=None, layer_attention=None)
    return dict(sliding_window=window, layer_attention=kinds)


def sliding_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The config.json fields of ``sliding_fields``: every layer's type, the window if any layer slides."""
    kinds = tuple("sliding" if w is not None else "full" for w in config.layer_windows)
    names = {ours: theirs for theirs, ours in LAYER_TYPES.items()}
    return dict(use_sliding_window="sliding" in kinds, sliding_window=config.sliding_window if "sliding" in kinds
                else None, max_window_layers=kinds.index("sliding") if "sliding" in kinds else len(kinds),
                layer_types=[names[kind] for kind in kinds])


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    return ModelConfig(**llama.common_fields(hf, ARCHITECTURES[architecture], max_positions=MAX_POSITIONS),
                       bias=False, qkv_bias=True, **sliding_fields(hf))


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return llama.common_to_hf(config) | sliding_to_hf(config)
