"""The key/value cache: a value that generation creates, passes down the model and gets back updated.

Legend: B batch, K key/value heads, S cached length, D head size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        return cls([LayerCache() for _ in range(n_layers)])

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
