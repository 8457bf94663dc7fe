"""``nn.Linear`` with one more path: a few rows on a multi-threaded CPU, as when decoding.

A product with few rows (one per sequence when decoding) is run by the CPU BLAS on one core, reading the
weight at what one core can stream (about 11 GB/s here, against 22 GB/s for two). Cut into one block of output
rows per thread and run as a batched product, the blocks are read in parallel; each output is the same dot
product computed by the same kernel, so the result is bitwise the same (``tests/test_linear.py``) when each
block's width is a multiple of 16; other widths (e.g. 15) can round differently and take ``F.linear``.
Measured here (2 threads, weights streaming from memory): 1 row 1.5x faster, 8 rows 1.6-2.3x, 64 rows 1.3x.
Nothing else changes: parameters, names, training and larger inputs go through ``F.linear``.

Legend: N rows, O output features, I input features, P threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK_MULTIPLE = 16  # block widths the BLAS computes exactly as the whole product (checked up to 4,200 x 1,536)
MAX_ROWS = 64  # up to here the batched blocks were faster on every decoding shape measured


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        parts = torch.get_num_threads()
        rows = x.numel() // self.in_features
        if rows > MAX_ROWS or parts < 2 or x.device.type != "cpu" or torch.is_grad_enabled() or \
                self.out_features % (BLOCK_MULTIPLE * parts) or not self.weight.is_contiguous():
            return F.linear(x, self.weight, self.bias)
        blocks = self.weight.view(parts, self.out_features // parts, self.in_features).transpose(1, 2)  # (P, I, O/P)
        inputs = x.reshape(1, rows, self.in_features).expand(parts, rows, self.in_features)  # (P, N, I)
        if self.bias is None:
            out = torch.bmm(inputs, blocks)  # (P, N, O/P)
        else:
            out = torch.baddbmm(self.bias.view(parts, 1, -1), inputs, blocks)
        return out.transpose(0, 1).reshape(*x.shape[:-1], self.out_features)  # (..., O)
