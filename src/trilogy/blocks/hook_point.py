"""HookPoint: a named place in the forward pass where an activation can be read or replaced.

Each block calls its hook points on the tensors worth seeing (``x = self.hook_resid_pre(x)``); a hook point
returns its input unchanged unless functions were added to it, and then what they make of it. It is a plain
attribute, not an ``nn.Module``: reaching and calling one is a dictionary lookup and a list check (0.13 µs on the
test machine), where an ``nn.Identity`` submodule costs ``nn.Module.__getattr__`` and ``__call__`` (1.6 µs),
about 70 times per decoded token. ``trilogy.hooks`` names them as TransformerLens does (``blocks.0.attn.hook_pattern``) and adds
and removes the functions; docs/inside.md lists every name.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

#: an activation -> the activation to use instead, or None to keep it
Function = Callable[[Tensor], "Tensor | None"]


class HookPoint:
    """The identity, unless functions were added; then each in turn sees the activation and may replace it."""

    __slots__ = ("functions",)

    def __init__(self) -> None:
        self.functions: list[Function] = []

    def __call__(self, x: Tensor) -> Tensor:
        if not self.functions:
            return x
        for function in self.functions:
            replaced = function(x)
            if replaced is not None:
                x = replaced
        return x

    @property
    def active(self) -> bool:
        """A function is added: the activation is wanted, so a block computes it even where it would not
        otherwise (attention scores and weights, which SDPA never writes out)."""
        return bool(self.functions)

    def add(self, function: Function) -> None:
        self.functions.append(function)

    def remove(self, function: Function) -> None:
        self.functions.remove(function)

    def __repr__(self) -> str:
        return f"HookPoint({len(self.functions)} functions)"


class EmbeddingHooks:
    """The hook points of one stack's input, called by the ``Embeddings`` it goes through: the tokens' vectors
    (``hook_embed``, after the embedding scale) and, with absolute positions, the positions'
    (``hook_pos_embed``). Each stack has its own, so the encoder's and the decoder's inputs are seen apart where
    they share one ``Embeddings`` (T5)."""

    __slots__ = ("hook_embed", "hook_pos_embed")

    def __init__(self, positions: bool):
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint() if positions else None
