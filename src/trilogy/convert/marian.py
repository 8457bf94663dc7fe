"""Marian (``model_type: marian``, the Opus-MT models): MarianMTModel, MarianModel.

BART's layers and names (see ``bart``) with other embeddings: fixed sinusoidal positions in Marian's layout,
the sin of every frequency in the first half of the vector and the cos in the second
(``sinusoidal_layout="halves"``), one for both stacks as the table is computed, not learned; no LayerNorm on the
embeddings; token embeddings times sqrt(d_model) (``scale_embedding``, true in every Opus-MT config). The head
is tied to the one token table, with ``final_logits_bias``. The decoder starts from the pad token
(``decoder_start_token_id``). The tables are written with the weights, as transformers' MarianModel expects
them (``computed_tensors``), and skipped when read. transformers' Marian is post-norm whatever config.json says: the old
``normalize_before`` (false in Opus-MT files) is read and a true one refused, as are separate encoder and
decoder vocabularies (``share_encoder_decoder_embeddings: false``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError
from .bart import KEY_MAP, seq2seq_fields, seq2seq_fields_to_hf
from .common import field

MODEL_TYPE = "marian"
ARCHITECTURES = {
    "MarianMTModel": dict(arch="encoder-decoder", head="lm"),
    "MarianModel": dict(arch="encoder-decoder", head="none"),
}
PREFIX = "model."
IGNORED = (
    r"(model\.)?(encoder|decoder)\.embed_tokens\.weight",  # the same tensor as shared.weight
    r"(model\.)?(encoder|decoder)\.embed_positions\.weight",  # the sinusoidal tables, computed (older files hold them)
)
#: options of the BART-shaped config Marian had before transformers 4, as Opus-MT files still write them
LEGACY = dict(normalize_before=False, add_final_layer_norm=False, normalize_embedding=False,
              static_position_embeddings=True, add_bias_logits=False)


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP


def computed_tensors(model: Any) -> dict[str, Tensor]:
    """Each stack's sinusoidal table (the same one), which transformers' MarianModel expects in its file
    (MarianMTModel loads it too; its own files leave it out)."""
    table = model.embeddings.positions.pe[0]  # (max_seq_len, C)
    return {"model.encoder.embed_positions.weight": table, "model.decoder.embed_positions.weight": table.clone()}


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    vocab, decoder_vocab = field(hf, "vocab_size"), field(hf, "decoder_vocab_size", hf.get("vocab_size"))
    if field(hf, "share_encoder_decoder_embeddings", True) is not True or decoder_vocab != vocab:
        raise CheckpointError(f"config.json: separate encoder and decoder vocabularies (vocab_size={vocab}, "
                              f"decoder_vocab_size={decoder_vocab}, share_encoder_decoder_embeddings="
                              f"{hf.get('share_encoder_decoder_embeddings')}) are not supported")
    fields = seq2seq_fields(hf, LEGACY, pad_token_id=58100, bos_token_id=None, eos_token_id=0,
                            decoder_start_token_id=58100)
    return ModelConfig(**ARCHITECTURES[architecture], **fields, position="sinusoidal", sinusoidal_layout="halves",
                       embedding_norm=False)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return seq2seq_fields_to_hf(config) | dict(decoder_vocab_size=config.vocab_size,
                                               share_encoder_decoder_embeddings=True)
