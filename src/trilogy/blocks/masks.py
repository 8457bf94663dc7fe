"""Boolean attention masks, built in one place. True means "this query may attend to this key".

Legend: B batch, T query length, S key length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Key-padding mask from a Hugging Face style attention mask (1 = real token).

    Args:
        attention_mask: (B, S), 1/True for real tokens.
    Returns:
        (B, 1, 1, S) bool.
    """
    return attention_mask.bool()[:, None, None, :]


def causal_mask(query_len: int, key_len: int, device: torch.device | None = None) -> Tensor:
    """Lower-triangular mask aligned to the end: query i sits at key position ``key_len - query_len + i``.

    Returns:
        (1, 1, T, S) bool.
    """
    offset = key_len - query_len
    query_pos = torch.arange(query_len, device=device)[:, None] + offset
    key_pos = torch.arange(key_len, device=device)[None, :]
    return (key_pos <= query_pos)[None, None]


def window_mask(query_len: int, key_len: int, window: int, device: torch.device | None = None) -> Tensor:
    """A sliding window, aligned to the end as ``causal_mask``: query i reaches the keys less than ``window``
    positions away from it, before or after (AND it with the causal mask for a causal window).

    Returns:
        (1, 1, T, S) bool.
    """
    query_pos = torch.arange(query_len, device=device)[:, None] + key_len - query_len
    key_pos = torch.arange(key_len, device=device)[None, :]
    return ((query_pos - key_pos).abs() < window)[None, None]


def combine(*masks: Tensor | None) -> Tensor | None:
    """AND of the given masks (None = no constraint); rows left with no key to attend to are opened fully,
    so that padded queries produce finite (ignored) values instead of NaN."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    mask = present[0]
    for other in present[1:]:
        mask = mask & other
    return mask | ~mask.any(dim=-1, keepdim=True)


def self_attention_mask(attention_mask: Tensor | None, query_len: int, key_len: int, causal: bool,
                        device: torch.device | None = None) -> Tensor | None:
    """The mask a stack's self-attention receives: padding of the keys, and causality for decoders.

    Args:
        attention_mask: (B, S) with 1 for real keys (S covers cached keys too), or None for no padding.
    Returns:
        (B|1, 1, T, S) bool, or None when every query may attend to every key.
    """
    pad = padding_mask(attention_mask) if attention_mask is not None else None
    causal_part = causal_mask(query_len, key_len, device) if causal else None
    return combine(pad, causal_part)


def prefix_lm_mask(attention_mask: Tensor | None, prefix_length: Tensor, query_len: int, key_len: int
                   ) -> Tensor:
    """The mask a prefix LM's self-attention receives: each query sees the keys up to itself (causal) and every
    key of its row's prefix, the first ``prefix_length`` real tokens; padded keys are hidden.

    Args:
        attention_mask: (B, S) with 1 for real keys (S covers cached keys too), or None for no padding.
        prefix_length: (B,) real tokens each row reads bidirectionally; 0 = causal throughout.
    Returns:
        (B, 1, T, S) bool.
    """
    device = prefix_length.device
    if attention_mask is None:
        real_up_to = torch.arange(1, key_len + 1, device=device)[None]  # (1, S) real tokens up to each key
    else:
        real_up_to = attention_mask.long().cumsum(-1)  # (B, S)
    in_prefix = real_up_to <= prefix_length[:, None]  # (B, S)
    visible = causal_mask(query_len, key_len, device) | in_prefix[:, None, None, :]  # (B, 1, T, S)
    if attention_mask is None:
        return visible
    visible = visible & padding_mask(attention_mask)
    return visible | ~visible.any(dim=-1, keepdim=True)  # padded queries that see no key: opened, as in combine


def cross_attention_mask(context_mask: Tensor | None) -> Tensor | None:
    """The mask a decoder's cross-attention receives: padding of the encoder output (source).

    Args:
        context_mask: (B, S) with 1 for real source tokens, or None.
    Returns:
        (B, 1, 1, S) bool, or None.
    """
    return combine(padding_mask(context_mask)) if context_mask is not None else None
