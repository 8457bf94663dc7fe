"""trilogy's dropout: drops the right share, scales the rest, keeps a 1-byte mask for backward."""

from __future__ import annotations

import pytest
import torch

from trilogy.blocks.dropout import Dropout, dropout


def test_drops_a_share_p_and_scales_the_rest():
    torch.manual_seed(0)
    x = torch.rand(200_000) + 1.0
    out = dropout(x, 0.3)
    dropped = out == 0
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.01)
    torch.testing.assert_close(out[~dropped], x[~dropped] / 0.7)


def test_gradient_is_the_mask_scaled_and_backward_keeps_one_byte_per_element():
    torch.manual_seed(0)
    x = torch.randn(64, 128, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = dropout(x, 0.5)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() * 2.0)
    assert sum(t.numel() * t.element_size() for t in saved) <= x.numel() + 64  # the bool mask (+ scalars)


def test_module_is_the_identity_in_eval_and_rejects_bad_p():
    layer = Dropout(0.5).eval()
    x = torch.randn(10)
    assert layer(x) is x
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)
