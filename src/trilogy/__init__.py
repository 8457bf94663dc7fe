"""trilogy: the three transformer families (encoder-only, decoder-only, encoder-decoder) in plain PyTorch.

The notebook's names work unchanged::

    from trilogy import EncoderOnlyTransformer, DecoderOnlyTransformer, EncoderDecoderTransformer
    from trilogy import PositionalEncoding, MLMHead, generate_text
"""

from __future__ import annotations

from .blocks.heads import MLMHead
from .blocks.kv_cache import KVCache, LayerCache
from .blocks.position import PositionalEncoding
from .config import PRESETS, ModelConfig
from .convert import CheckpointError, from_pretrained
from .errors import TrilogyError
from .generate import generate_text
from .models import (
    DecoderOnlyTransformer,
    EncoderDecoderTransformer,
    EncoderOnlyTransformer,
    ModelOutput,
    Tokenization,
    TransformerModel,
    build_model,
)
from .quantize import prepack, quantize

__version__ = "0.1.0"


def build(config_or_preset: ModelConfig | str, *, tokenization: Tokenization | None = None,
          checkpoint_activations: bool = False, **changes) -> TransformerModel:
    """A randomly initialised model from a ModelConfig or a preset name (with optional field changes); see
    ``TransformerModel`` for ``tokenization`` and ``checkpoint_activations``."""
    if isinstance(config_or_preset, str):
        config = ModelConfig.from_preset(config_or_preset, **changes)
    else:
        config = config_or_preset.replace(**changes) if changes else config_or_preset
    return build_model(config, tokenization=tokenization, checkpoint_activations=checkpoint_activations)


__all__ = [
    "PRESETS", "CheckpointError", "DecoderOnlyTransformer", "EncoderDecoderTransformer", "EncoderOnlyTransformer",
    "KVCache", "LayerCache", "MLMHead", "ModelConfig", "ModelOutput", "PositionalEncoding", "Tokenization", "TransformerModel",
    "TrilogyError", "__version__", "build", "build_model", "from_pretrained", "generate_text", "prepack",
    "quantize",
]

#: subpackages reachable as ``trilogy.NAME`` after ``import trilogy``, imported on first use (``viz`` brings
#: matplotlib and the explorer's page, which a training run does not need)
_ON_FIRST_USE = ("viz", "hooks")


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'trilogy' has no attribute {name!r}")
