"""The three families: encoder-only (BERT), decoder-only (GPT, Llama by config), encoder-decoder (T5)."""

from .base import ModelOutput, Tokenization, TransformerModel
from .decoder import DecoderOnlyTransformer
from .encoder import EncoderOnlyTransformer
from .encoder_decoder import EncoderDecoderTransformer
from .step_inputs import StepInputs

FAMILIES: dict[str, type[TransformerModel]] = {
    "encoder": EncoderOnlyTransformer,
    "decoder": DecoderOnlyTransformer,
    "encoder-decoder": EncoderDecoderTransformer,
}


def build_model(config, *, tokenization: Tokenization | None = None,
                checkpoint_activations: bool = False) -> TransformerModel:
    """The model of ``config.arch``, randomly initialised (see ``TransformerModel`` for the keywords)."""
    return FAMILIES[config.arch](config=config, tokenization=tokenization,
                                 checkpoint_activations=checkpoint_activations)


__all__ = [
    "FAMILIES", "DecoderOnlyTransformer", "EncoderDecoderTransformer", "EncoderOnlyTransformer", "ModelOutput",
    "StepInputs", "Tokenization", "TransformerModel", "build_model",
]
