"""A linear layer with its weight stored in 8 or 4 bits, computed by torch's own CPU weight-only kernels.

Decoding one sequence reads every weight once per token, so its speed is the weights' bytes over the memory
bandwidth: int8 halves bf16's bytes, int4 quarters them. The kernels (``aten._weight_int8pack_mm``,
``aten._weight_int4pack_mm_for_cpu``) read the packed weight and take bfloat16 activations; with float32
activations they are several times slower, so a quantised model computes in bfloat16.

- int8: symmetric, one scale per output row: w = q * scale, q in [-127, 127].
- int4: asymmetric in groups of ``group_size`` input columns, one scale and one offset per group and row:
  w = (q - 8) * scale + offset, q in [0, 15] (the kernel's convention), so a group's minimum and maximum are
  represented exactly up to rounding.

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


class QuantizedLinear(nn.Module):
    """``nn.Linear``'s computation, y = x W^T + b, from an int8 or int4 copy of W. Buffers, not parameters: a
    quantised layer is for inference. ``weight`` gives W back (dequantised, bfloat16), for code that reads the
    matrix itself (the fused loss of ``lm_loss``)."""

    def __init__(self, linear: nn.Linear, fmt: str, group_size: int = 64):
        super().__init__()
        if fmt not in FORMATS:
            raise TrilogyError(f"quantisation format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.format, self.group_size = fmt, group_size
        self.in_features, self.out_features = linear.in_features, linear.out_features
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
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))

    def _check_int4_shape(self) -> None:
        if not int4_supported():
            raise TrilogyError(f"int4 needs torch >= 2.6 (its CPU int4 kernel); this is torch {torch.__version__}")
        if self.in_features % self.group_size or self.out_features % _INT4_ROW_TILE:
            raise TrilogyError(
                f"int4 needs input features divisible by the group size {self.group_size} and output features by "
                f"{_INT4_ROW_TILE}; this layer is {self.in_features} -> {self.out_features} (try group_size=32, or "
                f"int8)")

    def _product(self, rows: Tensor) -> Tensor:
        """rows (M, K) bfloat16 -> rows W^T (M, N), from the packed weight."""
        if self.format == "int8":
            return torch.ops.aten._weight_int8pack_mm(rows, self.packed, self.scales)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scales)

    def forward(self, x: Tensor) -> Tensor:
        out = self._product(x.reshape(-1, self.in_features).to(torch.bfloat16))  # (M, N)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    @property
    def weight(self) -> Tensor:
        """W as the kernel computes with it, (N, K) bfloat16: column k of I W^T is row k of W."""
        return self._product(torch.eye(self.in_features, dtype=torch.bfloat16, device=self.packed.device)).T

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.format == "int4" else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={self.format}{group}")

