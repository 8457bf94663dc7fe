"""The key/value cache: a value that generation creates, passes down the model and gets back updated.

Cached keys and values are views of the first S positions of buffers that may hold more. Appending the next
tokens writes them into that spare room instead of copying the whole cache, as ``torch.cat`` would at every
step; a buffer without room is replaced by one twice as large, so appending costs the new positions only
(amortised), like a Python list. ``KVCache.allocate`` sizes the buffers up front so that no step copies.

Because the spare room is shared, a cache is *consumed* by the forward pass that extends it: continue from the
cache that pass returns. (Extending one cache twice would write both continuations into the same room.)

Legend: B batch, K key/value heads, S cached length, T new length, D head size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class LayerCache:
    """One layer's cached keys and values.

    ``self_kv`` grows by the new tokens at every step; ``cross_kv`` (encoder-decoder only) is computed once
    from the encoder output and reused.
    """

    self_kv: tuple[Tensor, Tensor] | None = None  # (B, K, S, D) each
    cross_kv: tuple[Tensor, Tensor] | None = None  # (B, K, S_src, D) each


@dataclass
class KVCache:
    """The cache of a whole stack: one ``LayerCache`` per layer."""

    layers: list[LayerCache] = field(default_factory=list)

    @classmethod
    def empty(cls, n_layers: int) -> KVCache:
        """A cache with nothing in it; its buffers are made (and grown) as tokens arrive."""
        return cls([LayerCache() for _ in range(n_layers)])

    @classmethod
    def allocate(cls, n_layers: int, batch: int, n_kv_heads: int, capacity: int, d_head: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> KVCache:
        """An empty cache whose self-attention buffers already hold ``capacity`` positions, (B, K, capacity, D)
        per layer for keys and for values, so that no step up to that length copies the cache."""

        def room() -> Tensor:
            return torch.empty(batch, n_kv_heads, capacity, d_head, dtype=dtype, device=device)[:, :, :0]

        return cls([LayerCache(self_kv=(room(), room())) for _ in range(n_layers)])

    @property
    def length(self) -> int:
        """How many positions the self-attention cache holds."""
        if not self.layers or self.layers[0].self_kv is None:
            return 0
        return self.layers[0].self_kv[0].size(2)

    def select(self, index: Tensor) -> KVCache:
        """Reorder / pick batch rows (beam search): every cached tensor is indexed along dim 0."""

        def pick(kv: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
            return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))

        return KVCache([LayerCache(pick(layer.self_kv), pick(layer.cross_kv)) for layer in self.layers])


def append(past: Tensor, new: Tensor) -> Tensor:
    """``past`` (B, K, S, D) followed by ``new`` (B, K, T, D) along the positions: (B, K, S + T, D), written
    into the spare room of past's buffer when it has some, else into a new buffer with room to double."""
    batch, heads, length, d_head = past.shape
    grown_length = length + new.size(2)
    if _room(past) >= grown_length:
        grown = past.as_strided((batch, heads, grown_length, d_head), past.stride())
    else:
        grown = past.new_empty(batch, heads, 2 * grown_length, d_head)[:, :, :grown_length]  # (B, K, S + T, D)
        grown.narrow(2, 0, length).copy_(past)
    grown.narrow(2, length, new.size(2)).copy_(new)
    return grown


def _room(past: Tensor) -> int:
    """How many positions past's buffer holds, if past starts a contiguous (B, K, capacity, D) buffer; else 0."""
    batch_stride, head_stride, position_stride, last_stride = past.stride()
    if past.storage_offset() or last_stride != 1 or position_stride != past.size(3) or \
            batch_stride != past.size(1) * head_stride:
        return 0
    capacity = head_stride // position_stride
    if past.untyped_storage().nbytes() < past.size(0) * batch_stride * past.element_size():
        return 0
    return capacity
