"""Linear layers for decoding on CPU: the weight stored the way a fast CPU kernel reads it.

Decoding one sequence reads every weight once per token, so its speed is the weights' bytes over the memory
bandwidth, if the one-row products stream the weights at that rate. ``nn.Linear``'s one-row product does not
on every CPU: on a 2-core AMD EPYC the BLAS's matrix-vector path streamed about 10 GB/s, the same product from
oneDNN's own blocked copy of the weight 2-3x that (a whole step: the "unpacked" rows of
``benchmarks/decode.py``). So:

- ``PackedLinear`` keeps the weight in its dtype (float32, bfloat16), reordered once into oneDNN's blocked
  layout (``mkldnn._reorder_linear_weight``), and computes with ``mkldnn._linear_pointwise``;
- ``QuantizedLinear`` stores it in 8 or 4 bits and computes with torch's weight-only kernels
  (``aten._weight_int8pack_mm``, ``aten._weight_int4pack_mm_for_cpu``), which read the packed integers and take
  bfloat16 activations (with float32 ones they are several times slower), so a quantised model computes in
  bfloat16.
  - int8: symmetric, one scale per output row: w = q * scale, q in [-127, 127].
  - int4: asymmetric in groups of ``group_size`` input columns, one scale and one offset per group and row:
    w = (q - 8) * scale + offset, q in [0, 15] (the kernel's convention).

Both hold buffers, not parameters: they are for inference. Their ``weight`` gives W back as the kernel computes
with it, for code that reads the matrix itself (the fused loss of ``lm_loss``).

Legend: M rows of input (batch x length), K input features, N output features, G groups (K / group_size).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import TrilogyError

FORMATS = ("int8", "int4")
#: the int4 kernel packs output rows in tiles of 16
_INT4_ROW_TILE = 16
#: ``innerKTiles`` of the int4 packing; the CPU kernel's layout does not depend on it, the argument is required
_INT4_INNER_K_TILES = 2


def int4_supported() -> bool:
    """Whether this torch has the int4 CPU kernel (torch >= 2.6)."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")


class InferenceLinear(nn.Module):
    """y = x W^T + b from a copy of W, the buffer ``packed``, that only ``_product`` reads."""

    packed: Tensor

    def __init__(self, linear: nn.Linear, bias_dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(bias_dtype))

    @property
    def compute_dtype(self) -> torch.dtype:
        raise NotImplementedError

    def _product(self, rows: Tensor) -> Tensor:
        """rows (M, K) in ``compute_dtype`` -> rows W^T (M, N)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features).to(self.compute_dtype).contiguous()  # (M, K), as the int4 kernel needs
        out = self._product(rows)  # (M, N)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    @property
    def weight(self) -> Tensor:
        """W as the kernel computes with it, (N, K): column k of I W^T is row k of W."""
        eye = torch.eye(self.in_features, dtype=self.compute_dtype, device=self.packed.device)  # (K, K)
        return self._product(eye).T


class PackedLinear(InferenceLinear):
    """``nn.Linear`` with its weight in oneDNN's blocked layout, same dtype (see the module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear, linear.weight.dtype)
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1))  # (N, K)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.packed.dtype

    def _product(self, rows: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(rows, self.packed, None, "none", [], "")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"dtype={self.packed.dtype}, layout=onednn")


class QuantizedLinear(InferenceLinear):
    """``nn.Linear`` from an int8 or int4 copy of W, computed in bfloat16 (see the module docstring)."""

    def __init__(self, linear: nn.Linear, fmt: str, group_size: int = 64):
        super().__init__(linear, torch.bfloat16)
        if fmt not in FORMATS:
            raise TrilogyError(f"quantisation format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.format, self.group_size = fmt, group_size
        weight = linear.weight.detach().float()  # (N, K)
        # the integers are rounded against the scales as stored (bfloat16), so each weight is within half a step
        if fmt == "int8":
            scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)  # (N,)
            levels = (weight / scale.float()[:, None]).round().clamp(-127, 127)  # (N, K)
            self.register_buffer("packed", levels.to(torch.int8))
            self.register_buffer("scales", scale)
        else:
            self._check_int4_shape()
            groups = weight.view(self.out_features, -1, group_size)  # (N, G, group_size)
            low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, G)
            scale = ((high - low) / 15).clamp(min=1e-12).to(torch.bfloat16)
            offset = (low + 8 * scale.float()).to(torch.bfloat16)  # the value of level 8
            levels = ((groups - offset.float()[..., None]) / scale.float()[..., None] + 8).round().clamp(0, 15)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                levels.view(self.out_features, -1).to(torch.int32), _INT4_INNER_K_TILES)  # (N, K / 2) uint8
            self.register_buffer("packed", packed)
            self.register_buffer("scales", torch.stack([scale, offset], dim=-1).transpose(0, 1).contiguous())  # (G, N, 2)

    def _check_int4_shape(self) -> None:
        if not int4_supported():
            raise TrilogyError(f"int4 needs torch >= 2.6 (its CPU int4 kernel); this is torch {torch.__version__}")
        if self.in_features % self.group_size or self.out_features % _INT4_ROW_TILE:
            raise TrilogyError(
                f"int4 needs input features divisible by the group size {self.group_size} and output features by "
                f"{_INT4_ROW_TILE}; this layer is {self.in_features} -> {self.out_features} (try group_size=32, or "
                f"int8)")

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.bfloat16

    def _product(self, rows: Tensor) -> Tensor:
        if self.format == "int8":
            return torch.ops.aten._weight_int8pack_mm(rows, self.packed, self.scales)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scales)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.format == "int4" else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={self.format}{group}")
