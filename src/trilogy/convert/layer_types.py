"""Per-layer attention kinds in config.json: ``layer_types`` (``full_attention`` / ``sliding_attention`` per
layer), or, in configs written before it, a rule of the model type's (every other layer in Gemma 2, five of
six in Gemma 3, all but every third in ModernBERT) <-> ``ModelConfig.layer_attention`` and ``sliding_window``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .common import field
from .qwen2 import LAYER_TYPES


def layer_attention_from_hf(hf: dict[str, Any], sliding: Callable[[int], bool]) -> tuple[str, ...]:
    """Each layer's kind ("full" or "sliding"): config.json's ``layer_types``, else ``sliding(i)`` for layer i."""
    types = field(hf, "layer_types")
    if types is None:
        n_layers = field(hf, "num_hidden_layers", required=True)
        return tuple("sliding" if sliding(i) else "full" for i in range(n_layers))
    unknown = sorted({str(t) for t in types} - set(LAYER_TYPES))
    if unknown:
        raise CheckpointError(f"config.json: layer_types {', '.join(unknown)} are not supported; supported: "
                              f"{', '.join(LAYER_TYPES)}")
    return tuple(LAYER_TYPES[t] for t in types)


def sliding_fields(kinds: tuple[str, ...], window: int | None) -> dict[str, Any]:
    """``sliding_window`` and ``layer_attention`` of layers of these kinds, the sliding ones through ``window``."""
    if "sliding" not in kinds:
        return dict(sliding_window=None, layer_attention=None)
    if window is None:
        raise CheckpointError("config.json: layer_types has sliding_attention layers but sliding_window is null")
    return dict(sliding_window=window, layer_attention=kinds)


def layer_types_to_hf(config: ModelConfig) -> list[str]:
    """config.json's ``layer_types`` of ``config``'s layers."""
    names = {ours: theirs for theirs, ours in LAYER_TYPES.items()}
    return [names["full" if window is None else "sliding"] for window in config.layer_windows]
