"""``nn.Linear`` with one more path: a single row on a multi-threaded CPU, as when decoding one token.

A one-row product is a matrix-vector product, which the CPU BLAS runs on one core, reading the weight at what
one core can stream (about 11 GB/s here, against 22 GB/s for two). Cut into one block of output rows per
thread and run as a batched product, the blocks are read in parallel; each output is the same dot product
computed by the same kernel, so the result is bitwise the same (``tests/test_linear.py``) when each block's
width is a multiple of 16; other widths (e.g. 15) can round differently and take ``F.linear``. Nothing else
changes: parameters, names and every other input go through ``F.linear``.

Legend: O output features, I input features, P threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK_MULTIPLE = 16  # block widths the BLAS computes exactly as the whole product (checked up to 4,200 x 1,536)


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        parts = torch.get_num_threads()
        one_row = x.numel() == x.size(-1)
        if not one_row or parts < 2 or x.device.type != "cpu" or torch.is_grad_enabled() or \
                self.out_features % (BLOCK_MULTIPLE * parts) or not self.weight.is_contiguous():
            return F.linear(x, self.weight, self.bias)
        blocks = self.weight.view(parts, self.out_features // parts, self.in_features).transpose(1, 2)  # (P, I, O/P)
        rows = x.reshape(1, 1, self.in_features).expand(parts, 1, self.in_features)  # (P, 1, I)
        if self.bias is None:
            out = torch.bmm(rows, blocks)  # (P, 1, O/P)
        else:
            out = torch.baddbmm(self.bias.view(parts, 1, -1), rows, blocks)
        return out.reshape(*x.shape[:-1], self.out_features)
