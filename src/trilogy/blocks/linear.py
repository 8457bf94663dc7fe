"""``nn.Linear`` with one more path: a few rows on a multi-threaded CPU, as when decoding.

A product with few rows (one per sequence when decoding) is run by the CPU BLAS on one core, reading the
weight at what one core can stream (about 11 GB/s here, against 22 GB/s for two). Cut into one block of output
rows per thread and run as one batched product, the blocks are read in parallel. Each block is multiplied as
``W_block @ x^T`` (the BLAS's matrix-vector form, which streams the weight rows as they lie in memory) rather
than ``x @ W_block^T`` (which makes the BLAS pack a transposed copy of the weight first). The sums are the same
products added in another order, so results match F.linear to float rounding (``tests/test_linear.py``), not
bitwise. Measured here (2 threads, weights streaming from memory), against F.linear: 1 row 1.4x (384 -> 1,152
and 384 -> 1,536), 1.9x (384 -> 8,192), no gain for 1,536 -> 384; 8 rows 1.5x. Nothing else changes:
parameters, names, training and larger inputs go through ``F.linear``.

Legend: N rows, O output features, I input features, P threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_ROWS = 64  # up to here the batched blocks were faster on every decoding shape measured


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight, self.bias
        rows = x.numel() // self.in_features
        if rows > MAX_ROWS or torch.is_grad_enabled() or x.device.type != "cpu":
            return F.linear(x, weight, bias)
        parts = torch.get_num_threads()
        if parts < 2 or self.out_features % parts or not weight.is_contiguous():
            return F.linear(x, weight, bias)
        blocks = weight.view(parts, self.out_features // parts, self.in_features)  # (P, O/P, I)
        inputs = x.reshape(rows, self.in_features).t().expand(parts, self.in_features, rows)  # (P, I, N)
        if bias is None:
            out = torch.bmm(blocks, inputs)  # (P, O/P, N)
        else:
            out = torch.baddbmm(bias.view(parts, -1, 1), blocks, inputs)
        return out.permute(2, 0, 1).reshape(*x.shape[:-1], self.out_features)  # (..., O)
