"""Dropout whose mask is a boolean tensor, drawn by one out-of-place op (``torch.bernoulli`` into bool).

``nn.Dropout`` keeps a mask of the activation's dtype for backward; this keeps 1 byte per element, and
drawing into a bool tensor is faster on CPU. Attention dropout is the large one, a (B, H, T, S) mask per layer:
one training step of a GPT-2-shaped model (d_model 256, 4 layers, batch 8 x 1024 tokens, dropout 0.1) keeps
1,755 MiB for backward (``benchmarks/checkpointing.py``), where float masks would take another 530 MiB. Every dropout in
trilogy's blocks goes through here. Activation checkpointing stores the masks instead of drawing them again
(``stack.py`` asks ``is_mask_draw``); that is why the draw is a single op whose output nothing mutates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import TrilogyError


def keep_mask(like: Tensor, p: float) -> Tensor:
    """True where an element is kept (probability 1 - p), shaped as ``like``. bool"""
    return torch.bernoulli(torch.empty_like(like, dtype=torch.bool), 1.0 - p)


def is_mask_draw(op, args: tuple) -> bool:
    """Whether the aten ``op`` called with ``args`` is ``keep_mask``'s draw."""
    return op is torch.ops.aten.bernoulli.p and args[0].dtype == torch.bool


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p); ``x`` itself when not
    training or ``p`` is 0."""
    if not training or p == 0.0:
        return x
    return torch.where(keep_mask(x, p), x, 0.0).mul_(1.0 / (1.0 - p))


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise TrilogyError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
