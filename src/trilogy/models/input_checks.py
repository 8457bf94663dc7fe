"""Checks on what users pass to a model, raised before any tensor work with the value and the limit named."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import TrilogyError, TrilogyTypeError


def check_ids(ids: object, vocab_size: int, name: str = "input_ids", max_len: int | None = None,
              past: int = 0) -> None:
    """Token ids must be a non-empty (B, T) integer tensor with values in [0, vocab_size) and, for models with
    absolute positions, ``past + T <= max_len``."""
    if not isinstance(ids, Tensor):
        raise TrilogyTypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TrilogyTypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2:
        raise TrilogyError(f"{name} must have shape (batch, length), got {tuple(ids.shape)}")
    if ids.size(0) == 0 or ids.size(1) == 0:
        raise TrilogyError(f"{name} is empty: shape {tuple(ids.shape)} (need at least one row and one token)")
    low, high = torch.stack(torch.aminmax(ids)).tolist()  # one read from the device
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise TrilogyError(f"{name} holds token id {bad}, outside [0, {vocab_size}) (vocab_size={vocab_size})")
    if max_len is not None and past + ids.size(1) > max_len:
        raise TrilogyError(
            f"{name} reaches position {past + ids.size(1)} but the model's positions stop at "
            f"max_seq_len={max_len}"
        )


def attention_mask_from(ids: Tensor, attention_mask: Tensor | None, padding_mask: Tensor | None,
                        name: str = "attention_mask", past: int = 0) -> Tensor | None:
    """One (B, past + T) bool mask, True = real token, from either an HF-style ``attention_mask`` (1 = real)
    or the notebook's key-padding ``mask`` (True = padding); None when no row has padding, so that no layer
    builds a mask (the stacks take a mask as having padding)."""
    if attention_mask is not None and padding_mask is not None:
        raise TrilogyError(f"give either {name} (1 = real token) or a padding mask (True = padding), not both")
    mask = attention_mask if attention_mask is not None else padding_mask
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TrilogyTypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    expected = (ids.size(0), past + ids.size(1))
    if tuple(mask.shape) != expected:
        raise TrilogyError(f"{name} has shape {tuple(mask.shape)} but the ids need {expected}")
    if mask.is_floating_point() and not bool(((mask == 0) | (mask == 1)).all()):
        raise TrilogyError(f"{name} must hold only 0 and 1")
    mask = mask.bool()
    real = mask if attention_mask is not None else ~mask
    per_row = real.sum(dim=-1).tolist()  # (B,) real tokens: one read from the device for both checks
    empty_rows = [row for row, count in enumerate(per_row) if count == 0]
    if empty_rows:
        raise TrilogyError(f"{name}: row(s) {empty_rows} have no real token")
    return None if all(count == real.size(-1) for count in per_row) else real


def check_prefix_length(prefix_length: object, batch: int, length: int) -> None:
    """A prefix LM's ``prefix_length`` must be a (B,) integer tensor with values in [0, length]."""
    if not isinstance(prefix_length, Tensor):
        raise TrilogyTypeError(f"prefix_length must be a torch.Tensor, got {type(prefix_length).__name__}")
    if prefix_length.is_floating_point() or prefix_length.is_complex() or prefix_length.dtype == torch.bool:
        raise TrilogyTypeError(f"prefix_length must hold integer token counts, got dtype {prefix_length.dtype}")
    if tuple(prefix_length.shape) != (batch,):
        raise TrilogyError(f"prefix_length has shape {tuple(prefix_length.shape)}, expected ({batch},): one count "
                           "per row")
    low, high = torch.stack(torch.aminmax(prefix_length)).tolist()  # one read from the device
    if low < 0 or high > length:
        raise TrilogyError(f"prefix_length holds {low if low < 0 else high}, outside [0, {length}] (the row's tokens)")
