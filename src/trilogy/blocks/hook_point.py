"""HookPoint: a named place in the forward pass where an activation can be read or replaced.

Each block calls its hook points on the tensors worth seeing (``x = self.hook_resid_pre(x)``); a hook point
returns its input unchanged unless a forward hook is registered on it, and then returns what the hooks return.
Without a hook it costs one dictionary check, not a module call (``nn.Module.__call__`` is about eight times
slower). ``trilogy.hooks`` names them as TransformerLens does (``blocks.0.attn.hook_pattern``) and registers
the hooks; docs/inside.md lists every name.
"""

from __future__ import annotations

from torch import Tensor, nn


class HookPoint(nn.Module):
    """The identity, unless a forward hook is registered on it; then what the hooks make of its input."""

    def __call__(self, x: Tensor) -> Tensor:
        return super().__call__(x) if self._forward_hooks else x

    def forward(self, x: Tensor) -> Tensor:
        return x

    @property
    def active(self) -> bool:
        """A hook is registered: the activation is wanted, so a block computes it even where it would not
        otherwise (attention scores and weights, which SDPA never writes out)."""
        return bool(self._forward_hooks)


class EmbeddingHooks(nn.Module):
    """The hook points of one stack's input, called by the ``Embeddings`` it goes through: the tokens' vectors
    (``hook_embed``, after the embedding scale) and, with absolute positions, the positions'
    (``hook_pos_embed``). Each stack has its own, so the encoder's and the decoder's inputs are seen apart where
    they share one ``Embeddings`` (T5)."""

    def __init__(self, positions: bool):
        super().__init__()
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint() if positions else None
