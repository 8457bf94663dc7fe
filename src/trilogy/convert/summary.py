"""What a checkpoint folder holds, without loading its weights: family, architecture, sizes, parameter count,
and whether the stored tensors match config.json (from the safetensors headers; a .bin is read whole)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import CheckpointError
from .checkpoint import NATIVE, expected_tensors, read_layout
from .files import TOKENIZER, read_tokenizer
from .hf import current_names
from .hub import resolve
from .loading import build_on_meta
from .mapping import check_tensors
from .stored import open_weights

FAMILY_NAMES = {"encoder": "encoder-only", "decoder": "decoder-only", "encoder-decoder": "encoder-decoder"}
#: the block options a checkpoint's model type may need beyond the sizes and the basic choices
BLOCK_OPTIONS = ("prefix_lm", "qkv_bias", "qk_norm", "sliding_window", "layer_attention", "attention_softcap",
                 "rotary_fraction", "parallel_residual", "norm_weight_offset", "sandwich_norm", "position_offset",
                 "positions_from_mask", "sinusoidal_layout", "embeddings_per_stack", "pooler_activation",
                 "logit_softcap", "rope_theta_local", "rope_linear_factor", "first_attention_norm", "head_transform",
                 "pooling")


def block_options(config: ModelConfig) -> dict[str, Any]:
    """The ``BLOCK_OPTIONS`` that ``config`` sets away from their defaults (``qkv_bias`` only where it differs from
    ``bias``)."""
    default = ModelConfig(arch=config.arch, vocab_size=config.vocab_size, head="none")
    return {name: getattr(config, name) for name in BLOCK_OPTIONS
            if getattr(config, name) != (config.bias if name == "qkv_bias" else getattr(default, name))}


def summarize(path: str | Path) -> dict[str, Any]:
    """A JSON-ready description of the checkpoint folder (or Hugging Face model name) ``path``.

    Raises:
        CheckpointError: config.json is missing, unreadable or describes an unsupported model.
    """
    folder = resolve(path)
    layout = read_layout(folder)
    config = layout.config
    model = build_on_meta(config)
    stored = open_weights(folder)
    _, expected, ignored = expected_tensors(layout, model)
    problem = None
    try:
        named = current_names(list(stored.shapes), set(expected), layout.prefix)
        check_tensors({name: stored.shapes[original] for name, original in named.items()}, expected, ignored,
                      source=stored.file.name)
    except CheckpointError as error:
        problem = str(error)
    tokenizer = read_tokenizer(folder) if (folder / TOKENIZER).is_file() else None
    return dict(
        path=str(folder),
        format="trilogy" if layout.family is None else "huggingface",
        transformers_loads_it=layout.family is not None,
        model_type=NATIVE if layout.family is None else layout.family.MODEL_TYPE,
        architecture=layout.architecture or type(model).__name__,
        family=FAMILY_NAMES[config.arch],
        head=config.head,
        tied_head=config.has_lm_head and config.tie_embeddings,
        n_layers=config.n_layers, n_decoder_layers=config.n_decoder_layers, d_model=config.d_model,
        n_heads=config.n_heads, n_kv_heads=config.n_kv_heads, d_head=config.d_head, d_ff=config.d_ff,
        vocab_size=config.vocab_size, max_seq_len=config.max_seq_len, position=config.position,
        norm=config.norm, norm_position=config.norm_position, activation=config.activation,
        gated_mlp=config.gated_mlp, block_options=block_options(config), parameters=model.num_parameters(),
        weights_file=stored.file.name, stored_tensors=len(stored.shapes),
        stored_elements=sum(math.prod(shape) for shape in stored.shapes.values()),
        dtypes=sorted({str(dtype).removeprefix("torch.") for dtype in stored.dtypes.values()}),
        weights_match_config=problem is None, problem=problem,
        tokenizer_vocab_size=tokenizer.get_vocab_size() if tokenizer is not None else None,
        config=config.to_dict(),
    )
