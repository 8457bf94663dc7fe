"""Positions: sinusoidal (the notebook's PositionalEncoding), learned absolute, T5 relative bias, rotary (on the
whole head, or on its first R dims: GPT-NeoX's and Phi-3's partial rotary).

Legend: B batch, T query length, S key length, H heads, D head size, R rotated dims (<= D), C model width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .init import InitScheme


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal positions added to the input (Vaswani et al.), as in the notebook. The sin and cos of
    each frequency sit side by side (``layout="interleaved"``, the notebook's) or the sin of every frequency
    comes first, then the cos of every one (``"halves"``, Marian's)."""

    def __init__(self, d_model: int, max_seq_len: int = 512, layout: str = "interleaved"):
        super().__init__()
        self.d_model, self.max_seq_len, self.layout = d_model, max_seq_len, layout
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the table, on the CPU, then put it on the default device. A model built on the meta
        device (as ``from_pretrained`` builds it) so gets its shape at no cost, and real values from this once
        its weights are loaded. (A meta ``arange`` would import torch._dynamo: over a second.)"""
        d_model, max_seq_len = self.d_model, self.max_seq_len
        if self.layout == "halves":
            pe = _sinusoids_in_halves(d_model, max_seq_len)
        else:
            position = torch.arange(max_seq_len, dtype=torch.float32, device="cpu")[:, None]
            div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device="cpu")
                                 * -(math.log(10000.0) / d_model))
            pe = torch.zeros(max_seq_len, d_model, device="cpu")
            pe[:, 0::2] = torch.sin(position * div_term)
            pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
        self.register_buffer("pe", pe[None].to(torch.get_default_device()), persistent=False)  # (1, max_seq_len, C)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Args: x (B, T, C); positions (B, T) or None for 0..T-1. Returns x + encoding, (B, T, C)."""
        return x + self.vectors(positions, x.size(1))

    def vectors(self, positions: Tensor | None, length: int) -> Tensor:
        """The encoding of ``positions`` (B, T), or of 0..length-1 when None: (B|1, T, C)."""
        return self.pe[:, :length] if positions is None else self.pe[0, positions]


def _sinusoids_in_halves(d_model: int, max_seq_len: int) -> Tensor:
    """Marian's table: the sin of the ceil(C/2) frequencies, then the cos of the first C/2 of them, computed in
    float64 as transformers computes it. Returns (max_seq_len, C) float32."""
    position = torch.arange(max_seq_len, dtype=torch.float64, device="cpu")[:, None]
    frequency = 10000.0 ** -(torch.arange(0, d_model, 2, dtype=torch.float64, device="cpu") / d_model)
    angles = position * frequency  # (max_seq_len, ceil(C/2))
    return torch.cat([angles.sin(), angles[:, : d_model // 2].cos()], dim=1).float()


class LearnedPositions(nn.Module):
    """A learned embedding per absolute position (BERT, GPT-2), added to the input. With an ``offset``, position
    p reads row p + offset (RoBERTa's table starts past its padding row, which padding reads as position -1)."""

    def __init__(self, d_model: int, max_seq_len: int, offset: int = 0):
        super().__init__()
        self.offset = offset
        self.embedding = nn.Embedding(offset + max_seq_len, d_model)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Args: x (B, T, C); positions (B, T) or None for 0..T-1. Returns (B, T, C)."""
        return x + self.vectors(positions, x.size(1))

    def vectors(self, positions: Tensor | None, length: int) -> Tensor:
        """The vectors of ``positions`` (B, T), or of 0..length-1 when None: (B|1, T, C)."""
        if positions is None:
            return self.embedding.weight[None, self.offset: self.offset + length]
        return self.embedding(positions + self.offset if self.offset else positions)


class RelativePositionBias(nn.Module):
    """T5's bucketed relative-position bias: one learned scalar per (bucket, head), added to the scores.

    Bidirectional buckets (encoder) split the range into "key before" and "key after"; causal buckets (decoder)
    only look back. Half the buckets are exact small distances, the rest grow logarithmically up to
    ``max_distance``.
    """

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(num_buckets, n_heads)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.embedding(self.embedding)

    def bucket(self, relative: Tensor) -> Tensor:
        """Map key_pos - query_pos to a bucket index."""
        buckets = self.num_buckets
        result = torch.zeros_like(relative)
        if self.bidirectional:
            buckets //= 2
            result += (relative > 0).long() * buckets
            distance = relative.abs()
        else:
            distance = (-relative).clamp(min=0)
        max_exact = buckets // 2
        is_small = distance < max_exact
        log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(self.max_distance / max_exact)
        large = (max_exact + (log_ratio * (buckets - max_exact)).long()).clamp(max=buckets - 1)
        return result + torch.where(is_small, distance, large)

    def forward(self, query_len: int, key_len: int, offset: int = 0) -> Tensor:
        """Bias for queries at positions offset..offset+T-1 against keys 0..S-1. Returns (1, H, T, S)."""
        device = self.embedding.weight.device
        query_pos = torch.arange(offset, offset + query_len, device=device)[:, None]
        key_pos = torch.arange(key_len, device=device)[None, :]
        values = self.embedding(self.bucket(key_pos - query_pos))  # (T, S, H)
        return values.permute(2, 0, 1)[None]  # (1, H, T, S)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE), in the half-split layout Llama checkpoints use, over the first
    ``rotary_dims`` dims of each head (all of them but in GPT-NeoX and some Phi-3s). With ``linear_factor``
    position p turns by the angles of p / factor (linear RoPE scaling)."""

    def __init__(self, rotary_dims: int, theta: float = 10000.0, linear_factor: float = 1.0):
        super().__init__()
        self.rotary_dims, self.theta, self.linear_factor = rotary_dims, theta, linear_factor
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the frequencies, as ``PositionalEncoding.reset_buffers`` computes its table."""
        exponents = torch.arange(0, self.rotary_dims, 2, dtype=torch.float32, device="cpu") / self.rotary_dims
        inv_freq = 1.0 / self.theta**exponents
        if self.linear_factor != 1.0:
            inv_freq = inv_freq / self.linear_factor
        inv_freq = inv_freq.to(torch.get_default_device())
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (R/2,)

    def forward(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Args: positions (B, T); dtype: the queries' and keys' (the angles are computed in float32, then
        rounded to it once, as transformers does, instead of in every product of every layer).
        Returns cos, sin, each (B, 1, T, R)."""
        angles = positions[..., None].float() * self.inv_freq  # (B, T, R/2)
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, T, R)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """(x1, x2, rest) -> (x1 cos - x2 sin, x2 cos + x1 sin, rest), x1 and x2 the two halves of the first R dims
    (R = cos.size(-1)), written into one new tensor: two passes over x where ``x * cos + rotate_half(x) * sin``
    makes five."""
    rotary = cos.size(-1)
    half = rotary // 2
    cos, sin = cos[..., :half], sin[..., :half]  # the angles repeat in the two halves
    first, second = x[..., :half], x[..., half:rotary]
    if torch.compiler.is_compiling():  # the compiler fuses the products itself and cannot trace out= into views
        return torch.cat([first * cos - second * sin, second * cos + first * sin, x[..., rotary:]], dim=-1)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    torch.mul(first, cos, out=out[..., :half]).addcmul_(second, sin, value=-1)
    torch.mul(second, cos, out=out[..., half:rotary]).addcmul_(first, sin)
    if rotary < x.size(-1):  # partial rotary: the other dims pass unchanged
        out[..., rotary:] = x[..., rotary:]
    return out


class _Rotary(torch.autograd.Function):
    """A rotation's gradient is the gradient rotated back (by the negative angles)."""

    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, grad: Tensor):
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, -sin), None, None


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (i, i + R/2) of x by the position angles, i < R/2. x: (B, H, T, D); cos/sin (B, 1, T, R),
    the same angles in both halves (``RotaryEmbedding``), R <= D. Returns (B, H, T, D) in x's dtype."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Rotary.apply(x, cos, sin)
    return _rotate(x, cos, sin)  # no graph to record (decoding): the autograd node's cost saved


def positions_from_mask(attention_mask: Tensor | None, length: int, past: int = 0,
                        device: torch.device | None = None) -> Tensor:
    """Position ids of the last ``length`` tokens: they count real tokens only, so left-padded rows start at 0.

    Args:
        attention_mask: (B, past + length) with 1 for real tokens, or None (positions past..past+length-1).
    Returns:
        (B|1, length) long.
    """
    if attention_mask is None:
        return torch.arange(past, past + length, device=device)[None]
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
