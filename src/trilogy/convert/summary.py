"""What a checkpoint folder holds, without loading its weights: family, architecture, sizes, parameter count,
and whether the stored tensors match config.json (from the safetensors headers; a .bin is read whole)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models import build_model
from .checkpoint import NATIVE, expected_tensors, read_layout
from .errors import CheckpointError
from .files import TOKENIZER, checkpoint_folder, read_tokenizer, tensor_shapes
from .hf import current_names
from .mapping import check_tensors

FAMILY_NAMES = {"encoder": "encoder-only", "decoder": "decoder-only", "encoder-decoder": "encoder-decoder"}


def summarize(path: str | Path) -> dict[str, Any]:
    """A JSON-ready description of the checkpoint folder ``path``.

    Raises:
        CheckpointError: config.json is missing, unreadable or describes an unsupported model.
    """
    folder = checkpoint_folder(path)
    layout = read_layout(folder)
    config = layout.config
    with torch.device("meta"):
        model = build_model(config)
    stored, weights_file = tensor_shapes(folder)
    _, expected, ignored = expected_tensors(layout, model)
    problem = None
    try:
        named = current_names({k: torch.empty(shape, device="meta") for k, (shape, _) in stored.items()},
                            set(expected), layout.prefix)
        check_tensors(named, expected, ignored, source=weights_file.name)
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
        gated_mlp=config.gated_mlp, parameters=model.num_parameters(),
        weights_file=weights_file.name, stored_tensors=len(stored),
        stored_elements=sum(_numel(shape) for shape, _ in stored.values()),
        dtypes=sorted({dtype for _, dtype in stored.values()}),
        weights_match_config=problem is None, problem=problem,
        tokenizer_vocab_size=tokenizer.get_vocab_size() if tokenizer is not None else None,
        config=config.to_dict(),
    )


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
