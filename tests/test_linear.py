"""The few-rows path of ``blocks.Linear`` (decoding on several CPU threads) gives F.linear's result to float
rounding, and the same shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trilogy.blocks.linear import Linear


@pytest.mark.parametrize("rows", [1, 8, 64, 65])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(384, 1152), (1536, 384), (64, 1024), (96, 30), (96, 31), (1000, 4128)])
def test_few_rows_on_several_threads_match_f_linear(shape, bias, rows):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        layer = Linear(*shape, bias=bias)
        x = torch.randn(rows, 1, shape[0])
        with torch.inference_mode():
            out = layer(x)
            torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
            assert out.shape == (rows, 1, shape[1])
    finally:
        torch.set_num_threads(threads)
