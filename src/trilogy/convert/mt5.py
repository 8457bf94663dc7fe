"""mT5 (``model_type: mt5``): MT5ForConditionalGeneration, MT5Model, MT5EncoderModel.

T5 v1.1 (gated-GELU, no bias, relative positions) with a vocabulary of 250,112: T5's tensor names and config
fields (see ``t5``) under other class names, with MT5Config's defaults (``feed_forward_proj="gated-gelu"``).
transformers' mT5 never scales the decoder output before the head (T5's ``scale_decoder_outputs`` is no mT5
field), and unties the head where the file holds one of its own, as Google's mT5 files do.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import t5
from .t5 import IGNORED, PREFIX, key_map

MODEL_TYPE = "mt5"
ARCHITECTURES = {name.replace("T5", "MT5"): heads for name, heads in t5.ARCHITECTURES.items()}
__all__ = ["ARCHITECTURES", "IGNORED", "MODEL_TYPE", "PREFIX", "config_from_hf", "config_to_hf", "key_map"]


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    return t5.t5_config(hf, ARCHITECTURES[architecture], feed_forward_proj="gated-gelu", scaled=False)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return {name: value for name, value in t5.config_to_hf(config).items() if name != "scale_decoder_outputs"}
