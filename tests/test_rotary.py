"""apply_rotary against the textbook formula (x * cos + rotate_half(x) * sin): values, dtypes, and its
hand-written backward by finite differences."""

import pytest
import torch

from trilogy.blocks.position import RotaryEmbedding, apply_rotary


def textbook(x, cos, sin):
    half = x.size(-1) // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_the_textbook_rotation_on_a_strided_input(dtype):
    qkv = torch.randn(2, 7, 3, 4, 16).to(dtype)  # q as attention takes it: a permuted view, not contiguous
    q = qkv.permute(2, 0, 3, 1, 4)[0]
    cos, sin = RotaryEmbedding(16)(torch.arange(3, 10)[None])
    out = apply_rotary(q, cos, sin)
    assert out.dtype == dtype and out.shape == q.shape
    tolerance = {} if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out, textbook(q.float(), cos, sin).to(dtype), **tolerance)


def test_gradient_by_finite_differences():
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    angles = torch.rand(1, 1, 5, 4, dtype=torch.float64) * 6
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    assert torch.autograd.gradcheck(lambda x: apply_rotary(x, cos, sin), (x,))
