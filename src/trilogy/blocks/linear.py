"""``nn.Linear`` whose weight is stored input-major, as GPT-2's Conv1D stores it.

The weight keeps nn.Linear's shape (O, I), names and values; only its memory order differs: W.t() is the
contiguous tensor, so ``F.linear`` hands the BLAS an untransposed (I, O) matrix. For products with few rows, as
when decoding, the CPU BLAS is faster that way: a decoding step's products, run in sequence, ~9% faster at
batch 1 (``benchmarks/generate.py`` prints both orders); for training-sized products the two orders cost the
same, and backward produces the weight's gradient in this order directly. Saving makes tensors contiguous (``convert/files.py``), so checkpoints
are ordinary.

Legend: O output features, I input features.
"""

from __future__ import annotations

from torch import nn


class Linear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.weight = nn.Parameter(self.weight.detach().t().contiguous().t())  # (O, I), strides (1, O)
