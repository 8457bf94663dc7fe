"""The key/value cache: a value that generation creates, passes down the model and gets back updated.

Cached keys and values are views of the first S positions of buffers that may hold more. Extending a cache by
the next tokens writes them into that spare room instead of copying the whole cache, as ``torch.cat`` would at
every step; buffers without room are replaced by ones twice as large, so a step costs its new positions only
(amortised), like a Python list. ``KVCache.allocate`` sizes the buffers up front so that no step copies.

The room is shared by every cache that views the same buffers, so the buffers remember how far they are
written. Only the cache that ends there writes in place; continuing any other one (a second continuation from
the same point: branching, speculative decoding) first copies it into buffers of its own (copy-on-write), so
every cache keeps giving the logits it gave. ``select`` (beam search) reorders the rows in place when it may,
and the caches it overwrote then refuse to be continued instead of attending to reordered rows.

Legend: B batch, K key/value heads, S cached length, T new length, D head size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import TrilogyError


class _Buffers:
    """Key and value buffers, (B, K, capacity, D) each, shared by every cache that views them; ``written`` is how
    many positions hold values, ``reorders`` how often ``select`` rewrote them in place."""

    def __init__(self, keys: Tensor, values: Tensor, written: int):
        self.keys, self.values, self.written, self.reorders = keys, values, written, 0

    @classmethod
    def holding(cls, keys: Tensor, values: Tensor, capacity: int) -> _Buffers:
        """New buffers of ``capacity`` positions that start with copies of ``keys`` and ``values`` (B, K, S, D)."""
        batch, heads, length, d_head = keys.shape

        def copy(t: Tensor) -> Tensor:
            buffer = t.new_empty(batch, heads, capacity, d_head)
            buffer[:, :, :length].copy_(t)
            return buffer

        return cls(copy(keys), copy(values), length)

    def view(self, length: int) -> KeyValues:
        """The first ``length`` positions, as the cache of one layer."""
        return KeyValues(self.keys[:, :, :length], self.values[:, :, :length], self, self.reorders)


@dataclass(frozen=True, eq=False)
class KeyValues:
    """One attention's cached keys and values, (B, K, S, D) each, and the buffers they view (None: tensors with
    no room, such as cross-attention's, computed once from the encoder output)."""

    keys: Tensor
    values: Tensor
    buffers: _Buffers | None = None
    reorders: int = 0  # the buffers' count when this view was made

    @property
    def length(self) -> int:
        return self.keys.size(2)

    def extend(self, keys: Tensor, values: Tensor) -> KeyValues:
        """These keys and values followed by ``keys``, ``values`` (B, K, T, D): (B, K, S + T, D) each. Written
        into the spare room when this cache ends where its buffers are written, else (another continuation has
        written there, or there is no room) into new buffers, so that no other cache changes."""
        self._check_current()
        length, total = self.length, self.length + keys.size(2)
        buffers = self.buffers
        if buffers is None or buffers.written != length or buffers.keys.size(2) < total:
            capacity = max(2 * total, buffers.keys.size(2) if buffers is not None else 0)
            buffers = _Buffers.holding(self.keys, self.values, capacity)
        buffers.keys[:, :, length:total].copy_(keys)
        buffers.values[:, :, length:total].copy_(values)
        buffers.written = total
        return buffers.view(total)

    def select(self, index: Tensor) -> KeyValues:
        """Rows ``index`` (B',) of the batch. In place when they are as many as the rows and this cache ends
        where its buffers are written (beam search); the earlier caches of these buffers can then no longer be
        continued. Otherwise into new tensors."""
        self._check_current()
        buffers = self.buffers
        if buffers is None or buffers.written != self.length or index.numel() != self.keys.size(0):
            return KeyValues(self.keys.index_select(0, index), self.values.index_select(0, index))
        self.keys.copy_(self.keys.index_select(0, index))
        self.values.copy_(self.values.index_select(0, index))
        buffers.reorders += 1
        return buffers.view(self.length)

    def _check_current(self) -> None:
        if self.buffers is not None and self.buffers.reorders != self.reorders:
            raise TrilogyError("this KVCache was overwritten when a cache sharing its buffers was reordered in "
                               "place by KVCache.select (beam search); continue from the cache select returned")


@dataclass
class LayerCache:
    """One layer's cached keys and values.

    ``self_kv`` grows by the new tokens at every step; ``cross_kv`` (encoder-decoder only) is computed once
    from the encoder output and reused.
    """

    self_kv: KeyValues | None = None
    cross_kv: KeyValues | None = None


@dataclass
class KVCache:
    """The cache of a whole stack: one ``LayerCache`` per layer."""

    layers: list[LayerCache] = field(default_factory=list)

    @classmethod
    def allocate(cls, n_layers: int, batch: int, n_kv_heads: int, capacity: int, d_head: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> KVCache:
        """An empty cache whose self-attention buffers already hold ``capacity`` positions, (B, K, capacity, D)
        per layer for keys and for values, so that no step up to that length copies the cache."""

        def room() -> Tensor:
            return torch.empty(batch, n_kv_heads, capacity, d_head, dtype=dtype, device=device)

        return cls([LayerCache(self_kv=_Buffers(room(), room(), 0).view(0)) for _ in range(n_layers)])

    @property
    def length(self) -> int:
        """How many positions the self-attention cache holds."""
        if not self.layers or self.layers[0].self_kv is None:
            return 0
        return self.layers[0].self_kv.length

    def select(self, index: Tensor) -> KVCache:
        """Reorder / pick batch rows (beam search): every cached tensor is indexed along dim 0, the
        self-attention buffers in place where ``KeyValues.select`` may."""

        def pick(kv: KeyValues | None) -> KeyValues | None:
            return None if kv is None else kv.select(index)

        return KVCache([LayerCache(pick(layer.self_kv), pick(layer.cross_kv)) for layer in self.layers])
