"""trilogy's RMSNorm against torch.nn.RMSNorm: outputs, gradients, dtypes; its backward by finite differences."""

import pytest
import torch

from trilogy.blocks.norm import RMSNorm, _RMSNormFunction


def pair(width: int, dtype=torch.float32):
    reference, ours = torch.nn.RMSNorm(width, eps=1e-6), RMSNorm(width, eps=1e-6)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(reference.weight)
    return reference.to(dtype), ours.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_torch_rmsnorm(dtype):
    reference, ours = pair(48, dtype)
    x = (torch.randn(3, 5, 48) * 3).to(dtype).requires_grad_()
    grad = torch.randn(3, 5, 48).to(dtype)
    results = []
    for module in (reference, ours):
        out = module(x)
        out.backward(grad)
        results.append((out, x.grad, module.weight.grad))
        x.grad = None
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for theirs, mine in zip(*results, strict=True):
        assert mine.dtype == theirs.dtype
        torch.testing.assert_close(mine, theirs, **tolerance)


def test_gradients_by_finite_differences():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, weight: _RMSNormFunction.apply(x, weight, 1e-6), (x, weight))


def test_autocast_keeps_the_input_dtype():
    _, ours = pair(16)
    x = torch.randn(2, 16, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x).dtype == torch.bfloat16
