"""Normalisation: LayerNorm (with or without bias) and RMSNorm, chosen by the config's ``norm`` string. RMSNorm
may scale by ``offset + weight`` (Gemma's 1 + weight, ``norm_weight_offset``).

Legend: N rows (all leading dimensions), C width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig


def _rms_norm(x: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``x / rms(x) * weight`` with statistics in fp32, as ``torch.nn.functional.rms_norm`` computes it.
    Returns the output, the normalised rows (before the weight) and 1 / rms, (N, C), (N, C), (N, 1)."""
    upcast = x.to(torch.promote_types(x.dtype, torch.float32))  # (N, C); x itself when fp32 or fp64
    # the norm in one pass over x (x.pow(2).mean() would write the squares out first)
    norm = torch.linalg.vector_norm(upcast, dim=-1, keepdim=True)  # (N, 1)
    inverse_rms = norm.pow_(2).div_(x.size(-1)).add_(eps).rsqrt_()  # (N, 1)
    normed = upcast * inverse_rms  # (N, C)
    if weight.dtype == x.dtype:  # the rows in x's dtype, then scaled (Llama, T5); else scaled in fp32 (Gemma)
        normed = normed.to(x.dtype)
    return (normed * weight).to(x.dtype), normed, inverse_rms


class _RMSNormFunction(torch.autograd.Function):
    """``_rms_norm`` with a backward written out: autograd through the composite (pow, mean, rsqrt, two
    products) makes about twice as many passes over (N, C) and keeps the input besides the normalised rows."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        out, normed, inverse_rms = _rms_norm(x, weight, eps)
        ctx.save_for_backward(normed.to(x.dtype), inverse_rms, weight)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        normed, inverse_rms, weight = ctx.saved_tensors
        # in the weight's dtype: fp32 for Gemma's (offset + weight), whatever the rows' dtype
        grad_weight = (grad.to(weight.dtype) * normed.to(weight.dtype)).reshape(-1, grad.size(-1)).sum(0) \
            if ctx.needs_input_grad[1] else None
        wide = torch.promote_types(normed.dtype, torch.float32)
        grad_normed = (grad * weight).to(wide)  # (N, C)
        upcast = normed.to(wide)
        # d normed_i / d x_j = (delta_ij - normed_i normed_j / C) / rms
        dot = torch.linalg.vecdot(grad_normed, upcast, dim=-1).unsqueeze(-1)  # (N, 1)
        grad_x = grad_normed.addcmul_(upcast, dot, value=-1 / grad.size(-1)).mul_(inverse_rms)
        return grad_x.to(normed.dtype), grad_weight, None


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (T5, Llama); the parameter is ``weight`` as in
    ``torch.nn.RMSNorm``, whose outputs and gradients it matches (``tests/test_norm.py``).

    With ``offset`` the scale is ``offset + weight`` (Gemma stores its scale minus 1 and uses offset 1), taken in
    fp32 as Gemma takes it; the weight then starts at ``1 - offset``, so the scale starts at 1."""

    def __init__(self, width: int, eps: float = 1e-6, offset: float = 0.0):
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((width,), 1.0 - offset))

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C)"""
        scale = self.weight.float() + self.offset if self.offset else self.weight  # (C,)
        if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
            return _RMSNormFunction.apply(x, scale, self.eps)
        return _rms_norm(x, scale, self.eps)[0]  # no graph to record (decoding): the autograd node's cost saved

    def extra_repr(self) -> str:
        return f"{self.weight.size(0)}, eps={self.eps}" + (f", offset={self.offset}" if self.offset else "")


def build_norm(config: ModelConfig, d_model: int | None = None) -> nn.Module:
    """The config's norm over the model width (or ``d_model`` when given)."""
    width = d_model or config.d_model
    if config.norm == "rmsnorm":
        return RMSNorm(width, eps=config.norm_eps, offset=config.norm_weight_offset)
    return nn.LayerNorm(width, eps=config.norm_eps, bias=config.norm_bias)
