"""What one decoding step feeds a model: the record ``start`` returns and ``step`` takes (see
``TransformerModel.start``). Generation moves it forward without looking inside; the family that made it reads it.

Legend: B batch, T new length, S cached + new length, S_src source length, C model width.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class StepInputs:
    """The next step's tokens and where they stand.

    ``mask`` (B, S) covers cached + new tokens and is None when no row has padding, so steps build no mask;
    ``positions`` (B|1, T) are the new tokens' positions; ``context``/``context_mask`` are the encoder output and
    its padding (encoder-decoder only); ``prefix_length`` (B,) is a prefix LM's prefix, the prompt, which only
    the prefill reads (the tokens after it are causal).
    """

    tokens: Tensor  # (B, T)
    mask: Tensor | None
    positions: Tensor  # (B|1, T)
    context: Tensor | None = None  # (B, S_src, C)
    context_mask: Tensor | None = None  # (B, S_src)
    prefix_length: Tensor | None = None  # (B,)

    def expand(self, n: int) -> StepInputs:
        """Each row repeated n times in place (row b becomes rows b*n .. b*n+n-1), for beam search."""

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat_interleave(n, dim=0)

        positions = self.positions if self.mask is None else rows(self.positions)  # (1, T) serves every row
        return StepInputs(rows(self.tokens), rows(self.mask), positions, rows(self.context), rows(self.context_mask),
                          rows(self.prefix_length))

    def advance(self, tokens: Tensor) -> StepInputs:
        """The inputs for feeding ``tokens`` (B, 1) after the current ones."""
        mask = self.mask
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)  # (B, S + 1)
        return replace(self, tokens=tokens, mask=mask, positions=self.positions[:, -1:] + 1, prefix_length=None)
