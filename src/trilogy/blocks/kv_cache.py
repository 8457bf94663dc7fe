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

A sliding layer (Mistral, Qwen2's upper layers) keeps only the last ``window - 1`` positions, all that its next
query reaches (``KeyValues.slide``), in buffers of at most 2 * window positions, however long the sequence gets.

Legend: B batch, K key/value heads, S cached length, T new length, D head size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import TrilogyError


class _Buffers:
    """Key and value buffers, (B, K, capacity, D) each, shared by every cache that views them; ``written`` is how
    far they hold values, ``reorders`` how often ``select`` rewrote them in place."""

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

    def view(self, start: int, end: int, dropped: int = 0) -> KeyValues:
        """Positions ``start`` to ``end`` of the buffers, as the cache of one layer that has let ``dropped``
        earlier positions go."""
        return KeyValues(self.keys[:, :, start:end], self.values[:, :, start:end], self, self.reorders, start,
                         dropped)


def kept_positions(seen: int, window: int | None) -> int:
    """How many of the ``seen`` positions a layer's cache keeps: all of them, or for a sliding layer the
    ``window - 1`` last, which are all the next query reaches besides itself."""
    return seen if window is None else min(seen, window - 1)


@dataclass(frozen=True, eq=False)
class KeyValues:
    """One attention's cached keys and values, (B, K, S, D) each, and the buffers they view (None: tensors with
    no room, such as cross-attention's, computed once from the encoder output). A sliding layer's cache keeps
    only its last positions (``slide``): ``dropped`` counts those it let go."""

    keys: Tensor
    values: Tensor
    buffers: _Buffers | None = None
    reorders: int = 0  # the buffers' count when this view was made
    start: int = 0  # where the view starts in the buffers
    dropped: int = 0

    @property
    def length(self) -> int:
        """The positions this cache holds."""
        return self.keys.size(2)

    @property
    def seen(self) -> int:
        """The positions this cache has seen: those it holds, and those a sliding window let go."""
        return self.dropped + self.length

    def extend(self, keys: Tensor, values: Tensor, window: int | None = None) -> KeyValues:
        """These keys and values followed by ``keys``, ``values`` (B, K, T, D): (B, K, S + T, D) each. Written
        into the spare room when this cache ends where its buffers are written, else (another continuation has
        written there, or there is no room) into new buffers, so that no other cache changes. A sliding layer's
        (``window``) new buffers hold 2 * window positions: the kept ones move to the front of new buffers
        once every window or so steps, not at every step. What does not fit them (a long prompt) is attended
        as one temporary tensor, of which ``slide`` keeps the end."""
        self._check_current()
        end, total = self.start + self.length, self.length + keys.size(2)
        buffers, start = self.buffers, self.start
        if buffers is None or buffers.written != end or buffers.keys.size(2) < end + keys.size(2):
            if window is None:
                capacity = max(2 * total, buffers.keys.size(2) if buffers is not None else 0)
            elif total > 2 * window:
                return KeyValues(torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2),
                                 dropped=self.dropped)
            else:
                capacity = 2 * window
            buffers, start = _Buffers.holding(self.keys, self.values, capacity), 0
        written = start + total
        buffers.keys[:, :, written - keys.size(2):written].copy_(keys)
        buffers.values[:, :, written - values.size(2):written].copy_(values)
        buffers.written = written
        return buffers.view(start, written, self.dropped)

    def slide(self, window: int | None) -> KeyValues:
        """What a layer with this ``window`` keeps for the next step (``kept_positions``): everything without
        one; else the last window - 1 positions, viewed where they are in the buffers, or (after a temporary
        from ``extend``) copied into buffers of 2 * window positions."""
        keep = kept_positions(self.length, window)
        if window is None or (keep == self.length and self.buffers is not None):
            return self
        drop = self.length - keep
        if self.buffers is None:
            kept = _Buffers.holding(self.keys[:, :, drop:], self.values[:, :, drop:], 2 * window)
            return kept.view(0, keep, self.dropped + drop)
        return self.buffers.view(self.start + drop, self.start + self.length, self.dropped + drop)

    def select(self, index: Tensor) -> KeyValues:
        """Rows ``index`` (B',) of the batch. In place when they are as many as the rows and this cache ends
        where its buffers are written (beam search); the earlier caches of these buffers can then no longer be
        continued. Otherwise into new tensors."""
        self._check_current()
        buffers, end = self.buffers, self.start + self.length
        if buffers is None or buffers.written != end or index.numel() != self.keys.size(0):
            return KeyValues(self.keys.index_select(0, index), self.values.index_select(0, index),
                             dropped=self.dropped)
        self.keys.copy_(self.keys.index_select(0, index))
        self.values.copy_(self.values.index_select(0, index))
        buffers.reorders += 1
        return buffers.view(self.start, end, self.dropped)

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

    self_kv: KeyValues | StaticKeyValues | None = None
    cross_kv: KeyValues | None = None


@dataclass
class KVCache:
    """The cache of a whole stack: one ``LayerCache`` per layer."""

    layers: list[LayerCache] = field(default_factory=list)

    @classmethod
    def allocate(cls, n_layers: int, batch: int, n_kv_heads: int, capacity: int, d_head: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 windows: tuple[int | None, ...] = ()) -> KVCache:
        """An empty cache whose self-attention buffers already hold ``capacity`` positions, (B, K, capacity, D)
        per layer for keys and for values, so that no step up to that length copies the cache. The layers
        with a sliding window (``windows``, one per layer, None = full; () = all full) get at most 2 * window
        positions, the room ``KeyValues.extend`` gives them."""

        def room(window: int | None) -> Tensor:
            positions = capacity if window is None else min(capacity, 2 * window)
            return torch.empty(batch, n_kv_heads, positions, d_head, dtype=dtype, device=device)

        windows = windows or (None,) * n_layers
        return cls([LayerCache(self_kv=_Buffers(room(w), room(w), 0).view(0, 0)) for w in windows])

    @property
    def length(self) -> int:
        """How many positions the self-attention cache has seen (a sliding layer holds only the last ones)."""
        if not self.layers or self.layers[0].self_kv is None:
            return 0
        return self.layers[0].self_kv.seen

    def select(self, index: Tensor) -> KVCache:
        """Reorder / pick batch rows (beam search): every cached tensor is indexed along dim 0, the
        self-attention buffers in place where ``KeyValues.select`` may."""

        def pick(kv: KeyValues | None) -> KeyValues | None:
            return None if kv is None else kv.select(index)

        return KVCache([LayerCache(pick(layer.self_kv), pick(layer.cross_kv)) for layer in self.layers])


@dataclass(frozen=True, eq=False)
class StaticKeyValues:
    """One layer's keys and values in buffers of a fixed capacity, (B, K, capacity, D) each, always attended
    whole: the new positions are written where ``written`` (a () long tensor shared by every layer of the
    cache) says, and the stack's mask hides the positions not yet written (``StaticKVCache.visible``). Every step
    then has the same shapes and reads no count back from the device, which is what a compiled step needs
    (``torch.compile`` with static shapes, compiled once per batch, capacity and dtype)."""

    keys: Tensor
    values: Tensor
    written: Tensor

    def extend(self, keys: Tensor, values: Tensor, window: int | None = None) -> StaticKeyValues:
        """Writes ``keys``, ``values`` (B, K, T, D) at the next T positions, in place; the buffers whole."""
        if window is not None:
            raise TrilogyError("a static KV cache does not keep sliding windows; decode without compile=True")
        at = self.written + torch.arange(keys.size(2), device=keys.device)  # (T,)
        self.keys.index_copy_(2, at, keys)
        self.values.index_copy_(2, at, values)
        return self

    def slide(self, window: int | None) -> StaticKeyValues:
        """Nothing to let go: ``extend`` refuses windows."""
        return self


@dataclass(frozen=True, eq=False)
class StaticKVCache:
    """The static cache of a whole stack: one ``StaticKeyValues`` per layer, all written up to ``written``."""

    layers: list[LayerCache]
    written: Tensor  # () long

    @classmethod
    def allocate(cls, n_layers: int, batch: int, n_kv_heads: int, capacity: int, d_head: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> StaticKVCache:
        """An empty cache of ``capacity`` positions, (B, K, capacity, D) per layer for keys and for values."""
        written = torch.zeros((), dtype=torch.long, device=device)

        def room() -> Tensor:
            return torch.zeros(batch, n_kv_heads, capacity, d_head, dtype=dtype, device=device)

        return cls([LayerCache(self_kv=StaticKeyValues(room(), room(), written)) for _ in range(n_layers)], written)

    @property
    def capacity(self) -> int:
        return self.layers[0].self_kv.keys.size(2) if self.layers and self.layers[0].self_kv is not None else 0

    def visible(self, query_len: int) -> Tensor:
        """(1, 1, T, capacity) bool: the keys each of the next ``query_len`` queries may attend, those written
        before it and itself (the causal mask over the buffers)."""
        query_pos = self.written + torch.arange(query_len, device=self.written.device)  # (T,)
        key_pos = torch.arange(self.capacity, device=self.written.device)  # (capacity,)
        return (key_pos[None, :] <= query_pos[:, None])[None, None]

    def advance(self, query_len: int) -> StaticKVCache:
        """This cache after a step of ``query_len`` new positions (every layer has written them): the count
        moves on, in place."""
        self.written.add_(query_len)
        return self
