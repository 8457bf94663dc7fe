"""The three families: encoder-only (BERT), decoder-only (GPT, Llama by config), encoder-decoder (T5)."""

from .base import ModelOutput, TransformerModel
from .decoder import DecoderOnlyTransformer
from .decoding import StepInputs
from .encoder import EncoderOnlyTransformer
from .encoder_decoder import EncoderDecoderTransformer

FAMILIES: dict[str, type[TransformerModel]] = {
    "encoder": EncoderOnlyTransformer,
    "decoder": DecoderOnlyTransformer,
    "encoder-decoder": EncoderDecoderTransformer,
}


def build_model(config) -> TransformerModel:
    """The model of ``config.arch``, randomly initialised."""
    return FAMILIES[config.arch](config=config)


__all__ = [
    "FAMILIES", "DecoderOnlyTransformer", "EncoderDecoderTransformer", "EncoderOnlyTransformer", "ModelOutput",
    "StepInputs", "TransformerModel", "build_model",
]
