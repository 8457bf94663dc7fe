"""BART (``model_type: bart``): BartForConditionalGeneration, BartModel.

The original Transformer's post-norm layers with biases everywhere and GELU, plus four block options:

- learned positions whose table starts at row 2 (``position_offset=2``: fairseq kept two rows before position 0),
  counted from 0 in the source and from the start token in the target;
- a LayerNorm on the embeddings (``embedding_norm``), and a position table and LayerNorm of its own in each stack
  around the one token table (``embeddings_per_stack``);
- token embeddings times sqrt(d_model) when config.json says ``scale_embedding`` (``embedding_scale``);
- ``final_logits_bias``, a (1, V) buffer added to the tied head's logits: our head's bias (``head_bias``).

The pieces Marian reuses: the layers' tensor names (``KEY_MAP``) and the sizes under the config.json names both
classes share (``seq2seq_fields``, ``seq2seq_fields_to_hf``). Trilogy's decoder numbers the target's real tokens
(from ``decoder_attention_mask``), transformers' every position: the two agree unless the target is
left-padded.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .common import ACTIVATIONS_TO_HF, activation_from_hf, field, refuse, weight_and_bias

MODEL_TYPE = "bart"
ARCHITECTURES = {
    "BartForConditionalGeneration": dict(arch="encoder-decoder", head="lm"),
    "BartModel": dict(arch="encoder-decoder", head="none"),
}
PREFIX = "model."
IGNORED = (
    r"(model\.)?(encoder|decoder)\.embed_tokens\.weight",  # the same tensor as shared.weight
    r"(model\.)?(encoder|decoder)\.version",  # fairseq's, which transformers skips too
)
POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding's
#: options of BartConfig before transformers 4 that today's class ignores, with the value it computes
LEGACY = dict(normalize_before=False, add_final_layer_norm=False, normalize_embedding=True,
              static_position_embeddings=False, add_bias_logits=False)


def _fused(ours: str, theirs: list[str]) -> dict:
    """Separate projections (weight and bias each) fused into our one linear layer ``ours``."""
    return {f"{ours}.{part}": (tuple(f"{name}.{part}" for name in theirs), "fuse") for part in ("weight", "bias")}


def _layers(stack: str) -> dict:
    """The layers of our stack ``stack`` ("encoder" | "decoder", as in transformers); the encoder's have no
    cross-attention, so its entries match nothing there."""
    ours, theirs = f"{stack}.layers.{{}}", f"model.{stack}.layers.{{}}"
    self_attn, cross_attn = f"{theirs}.self_attn", f"{theirs}.encoder_attn"
    return {
        **_fused(f"{ours}.self_attn.qkv", [f"{self_attn}.{p}_proj" for p in "qkv"]),
        **weight_and_bias(f"{ours}.self_attn.out", f"{self_attn}.out_proj"),
        **weight_and_bias(f"{ours}.self_attn_norm", f"{theirs}.self_attn_layer_norm"),
        **weight_and_bias(f"{ours}.cross_attn.q", f"{cross_attn}.q_proj"),
        **_fused(f"{ours}.cross_attn.kv", [f"{cross_attn}.{p}_proj" for p in "kv"]),
        **weight_and_bias(f"{ours}.cross_attn.out", f"{cross_attn}.out_proj"),
        **weight_and_bias(f"{ours}.cross_attn_norm", f"{theirs}.encoder_attn_layer_norm"),
        **weight_and_bias(f"{ours}.mlp.up", f"{theirs}.fc1"),
        **weight_and_bias(f"{ours}.mlp.down", f"{theirs}.fc2"),
        **weight_and_bias(f"{ours}.mlp_norm", f"{theirs}.final_layer_norm"),
    }


KEY_MAP = {
    "embeddings.tokens.weight": "model.shared.weight",
    "embeddings.positions.embedding.weight": "model.encoder.embed_positions.weight",
    **weight_and_bias("embeddings.norm", "model.encoder.layernorm_embedding"),
    "decoder_embeddings.tokens.weight": "model.decoder.embed_tokens.weight",  # the shared table
    "decoder_embeddings.positions.embedding.weight": "model.decoder.embed_positions.weight",
    **weight_and_bias("decoder_embeddings.norm", "model.decoder.layernorm_embedding"),
    **_layers("encoder"),
    **_layers("decoder"),
    "lm_head.proj.weight": "lm_head.weight",
    "lm_head.proj.bias": ("final_logits_bias", "row"),
}


def key_map(config: ModelConfig) -> dict:
    return KEY_MAP


def seq2seq_fields(hf: dict[str, Any], legacy: dict[str, Any], **tokens: Any) -> dict[str, Any]:
    """The ModelConfig fields under the config.json names BART and Marian share: post-norm layers with biases,
    the same heads and feed-forward width in both stacks, one token table for both and the head, the head's
    bias; ``tokens`` the config class's default special tokens. Refuses the ``legacy`` options set to what the
    class does not compute."""
    for name, value in legacy.items():
        refuse(hf, name, (value,), f"an option of old transformers; today's ignores it and computes {name}={value}")
    for part in ("attention_heads", "ffn_dim"):
        encoder, decoder = (field(hf, f"{stack}_{part}", required=True) for stack in ("encoder", "decoder"))
        if encoder != decoder:
            raise CheckpointError(f"config.json: encoder_{part}={encoder} and decoder_{part}={decoder} differ; "
                                  f"trilogy's stacks have one {'n_heads' if part == 'attention_heads' else 'd_ff'}")
    if field(hf, "tie_word_embeddings", True) is not True:
        raise CheckpointError("config.json: tie_word_embeddings=false is not supported (transformers then gives the "
                              "encoder, the decoder and the head token tables of their own; trilogy's stacks share "
                              "one)")
    d_model = field(hf, "d_model", required=True)
    return dict(
        vocab_size=field(hf, "vocab_size", required=True), d_model=d_model,
        n_heads=hf["encoder_attention_heads"], n_layers=field(hf, "encoder_layers", required=True),
        n_decoder_layers=field(hf, "decoder_layers", required=True), d_ff=hf["encoder_ffn_dim"],
        max_seq_len=field(hf, "max_position_embeddings", 1024), norm="layernorm", norm_eps=1e-5, norm_bias=True,
        norm_position="post", final_norm=False, activation=activation_from_hf(
            field(hf, "activation_function", "gelu"), "activation_function"),
        gated_mlp=False, bias=True, attention_scale=None, dropout=field(hf, "dropout", 0.1),
        embedding_scale=d_model**0.5 if field(hf, "scale_embedding", False) else 1.0,
        tie_embeddings=True, head_scale=1.0, head_bias=True,
        **{name: hf.get(name, default) for name, default in tokens.items()},  # absent, not null
    )


def seq2seq_fields_to_hf(config: ModelConfig) -> dict[str, Any]:
    """``seq2seq_fields`` the other way."""
    return dict(
        vocab_size=config.vocab_size, d_model=config.d_model, encoder_layers=config.n_layers,
        decoder_layers=config.n_decoder_layers, encoder_attention_heads=config.n_heads,
        decoder_attention_heads=config.n_heads, encoder_ffn_dim=config.d_ff, decoder_ffn_dim=config.d_ff,
        max_position_embeddings=config.max_seq_len, activation_function=ACTIVATIONS_TO_HF[config.activation],
        dropout=config.dropout, scale_embedding=config.embedding_scale != 1.0,
        tie_word_embeddings=config.tie_embeddings, pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    fields = seq2seq_fields(hf, LEGACY, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    return ModelConfig(**ARCHITECTURES[architecture], **fields, position="learned", position_offset=POSITION_OFFSET,
                       embedding_norm=True, embeddings_per_stack=True)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return seq2seq_fields_to_hf(config)
