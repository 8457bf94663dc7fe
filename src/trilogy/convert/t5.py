"""T5 (``model_type: t5``): T5ForConditionalGeneration, T5Model, and T5EncoderModel (our encoder-only family
with T5's layers). v1.0 ties the head to the embeddings and scales the decoder output by d_model**-0.5 before
it; v1.1/Flan use gated-GELU and an untied, unscaled head (transformers >= 5 also builds tied, unscaled ones).
The relative-position bias lives in the first block of each stack; q, k, v (and the cross-attention's k, v)
are fused into ours. mT5 reuses the names and fields (``key_map``, ``t5_config``).
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .common import ACTIVATIONS_TO_HF, activation_from_hf, field

MODEL_TYPE = "t5"
ARCHITECTURES = {
    "T5ForConditionalGeneration": dict(arch="encoder-decoder", head="lm"),
    "T5Model": dict(arch="encoder-decoder", head="none"),
    "T5EncoderModel": dict(arch="encoder", head="none"),
}
PREFIX = ""
IGNORED = (
    r"(encoder|decoder)\.embed_tokens\.weight",  # the same tensor as shared.weight
    r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight",  # unused by T5 itself
)


def _attention(ours: str, theirs: str, cross: bool) -> dict:
    """Entries of one attention block: ``ours`` like "encoder.layers.{}.self_attn", ``theirs`` like
    "encoder.block.{}.layer.0.SelfAttention"."""
    entries: dict[str, Any] = {f"{ours}.out.weight": f"{theirs}.o.weight"}
    if cross:
        entries[f"{ours}.q.weight"] = f"{theirs}.q.weight"
        entries[f"{ours}.kv.weight"] = ((f"{theirs}.k.weight", f"{theirs}.v.weight"), "fuse")
    else:
        entries[f"{ours}.qkv.weight"] = (tuple(f"{theirs}.{p}.weight" for p in "qkv"), "fuse")
    return entries


def _stack(ours: str, theirs: str, decoder: bool, gated: bool) -> dict:
    """Entries of one stack: ``ours`` "encoder"/"decoder"/"stack", ``theirs`` "encoder"/"decoder"."""
    layer, block = f"{ours}.layers.{{}}", f"{theirs}.block.{{}}.layer"
    mlp_index = 2 if decoder else 1
    mlp = f"{block}.{mlp_index}.DenseReluDense"
    entries = {
        f"{ours}.relative_bias.embedding.weight": f"{theirs}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        f"{ours}.final_norm.weight": f"{theirs}.final_layer_norm.weight",
        f"{layer}.self_attn_norm.weight": f"{block}.0.layer_norm.weight",
        f"{layer}.mlp_norm.weight": f"{block}.{mlp_index}.layer_norm.weight",
        f"{layer}.mlp.down.weight": f"{mlp}.wo.weight",
        **_attention(f"{layer}.self_attn", f"{block}.0.SelfAttention", cross=False),
    }
    if gated:
        entries[f"{layer}.mlp.gate.weight"] = f"{mlp}.wi_0.weight"
        entries[f"{layer}.mlp.up.weight"] = f"{mlp}.wi_1.weight"
    else:
        entries[f"{layer}.mlp.up.weight"] = f"{mlp}.wi.weight"
    if decoder:
        entries[f"{layer}.cross_attn_norm.weight"] = f"{block}.1.layer_norm.weight"
        entries.update(_attention(f"{layer}.cross_attn", f"{block}.1.EncDecAttention", cross=True))
    return entries


def key_map(config: ModelConfig) -> dict:
    entries = {"embeddings.tokens.weight": "shared.weight", "lm_head.proj.weight": "lm_head.weight"}
    for spec in config.structure.stacks:  # T5EncoderModel has the encoder alone, in our attribute "stack"
        entries |= _stack(spec.module, spec.name, decoder=spec.cross_attention, gated=config.gated_mlp)
    return entries


def _feed_forward(hf: dict[str, Any], default: str) -> tuple[str, bool]:
    """(activation, gated) from ``feed_forward_proj`` (``default`` when absent): "relu", "gated-gelu" (tanh GELU,
    as transformers reads it), "gated-silu", ..."""
    spec = field(hf, "feed_forward_proj", default)
    parts = spec.split("-") if isinstance(spec, str) else []
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise CheckpointError(f"config.json: feed_forward_proj={spec!r} is not of the form 'ACT' or 'gated-ACT'")
    name = "gelu_new" if spec == "gated-gelu" else parts[-1]
    return activation_from_hf(name, "feed_forward_proj"), len(parts) == 2


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    # the scale follows the tie unless stated on its own (transformers >= 5 writes ``scale_decoder_outputs``)
    scaled = bool(field(hf, "scale_decoder_outputs", field(hf, "tie_word_embeddings", True) is not False))
    return t5_config(hf, ARCHITECTURES[architecture], feed_forward_proj="relu", scaled=scaled)


def t5_config(hf: dict[str, Any], heads: dict[str, Any], feed_forward_proj: str, scaled: bool) -> ModelConfig:
    """The config of a T5-shaped class (T5's, mT5's) with ``heads``, its ARCHITECTURES entry: its config class's
    default ``feed_forward_proj``, and whether the decoder output is ``scaled`` by d_model**-0.5 before the
    head."""
    activation, gated = _feed_forward(hf, feed_forward_proj)
    d_model = field(hf, "d_model", required=True)
    tied = field(hf, "tie_word_embeddings", True) is not False  # as transformers: only an explicit false unties
    return ModelConfig(
        **heads,
        vocab_size=field(hf, "vocab_size", required=True), d_model=d_model, d_head=field(hf, "d_kv", required=True),
        n_heads=field(hf, "num_heads", required=True), n_layers=field(hf, "num_layers", required=True),
        n_decoder_layers=(field(hf, "num_decoder_layers", hf.get("num_layers"))
                          if heads["arch"] == "encoder-decoder" else None),
        d_ff=field(hf, "d_ff", required=True), max_seq_len=field(hf, "n_positions", 512), norm="rmsnorm",
        norm_eps=field(hf, "layer_norm_epsilon", 1e-6), norm_bias=False, norm_position="pre", final_norm=True,
        activation=activation, gated_mlp=gated, bias=False, attention_scale=1.0,
        dropout=field(hf, "dropout_rate", 0.1), position="relative",
        relative_buckets=field(hf, "relative_attention_num_buckets", 32),
        relative_max_distance=field(hf, "relative_attention_max_distance", 128), type_vocab_size=0,
        embedding_norm=False, embedding_scale=1.0, tie_embeddings=tied,
        head_scale=d_model**-0.5 if scaled else 1.0, head_bias=False, pooler=False,
        pad_token_id=field(hf, "pad_token_id", 0), eos_token_id=field(hf, "eos_token_id", 1),
        decoder_start_token_id=field(hf, "decoder_start_token_id", field(hf, "pad_token_id", 0)),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    activation = ACTIVATIONS_TO_HF[config.activation]
    if config.gated_mlp:
        activation = "gated-gelu" if activation == "gelu_new" else f"gated-{activation}"
    return dict(
        vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_head, num_heads=config.n_heads,
        num_layers=config.n_layers, num_decoder_layers=config.n_decoder_layers or config.n_layers,
        d_ff=config.d_ff, layer_norm_epsilon=config.norm_eps, feed_forward_proj=activation,
        dropout_rate=config.dropout, relative_attention_num_buckets=config.relative_buckets,
        relative_attention_max_distance=config.relative_max_distance, tie_word_embeddings=config.tie_embeddings,
        scale_decoder_outputs=config.head_scale != 1.0,
        pad_token_id=config.pad_token_id, eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )
