"""No host-device synchronisation where it would stall a GPU on every call: the decoding step, the stacks given
a checked mask, and the fused loss. Every way a tensor's value reaches Python is made to fail while they run."""

from __future__ import annotations

import contextlib

import pytest
import torch

import trilogy
from trilogy.blocks.loss import linear_cross_entropy

READS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")


@contextlib.contextmanager
def no_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor's value was read back to Python (a host-device sync on a GPU)")

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, refuse)
        yield


def test_the_guard_catches_a_read(monkeypatch):
    with no_reads(monkeypatch), pytest.raises(AssertionError, match="read back"):
        bool(torch.ones(2).all())


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama", "tiny-t5"])
def test_a_decoding_step_reads_nothing_back(preset, monkeypatch):
    model = trilogy.build(preset).eval()
    ids = torch.randint(4, 200, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # padding: the masked path, not only the fast one
    with torch.inference_mode():
        inputs, sequences = model.start(ids, mask, max_new_tokens=3)
        cache = model.new_cache(2, sequences.size(1) + 3)
        with no_reads(monkeypatch):
            for _ in range(3):
                logits, cache = model.step(inputs, cache)
                inputs = inputs.advance(logits.argmax(-1, keepdim=True))
    assert cache.length == sequences.size(1) + 2


def test_a_stack_with_a_checked_mask_and_the_fused_loss_read_nothing_back(monkeypatch):
    model = trilogy.build("tiny-gpt2")
    ids = torch.randint(4, 200, (2, 8))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :3] = False
    labels = ids.roll(-1, 1)
    labels[:, -1] = -100
    hidden = model.embeddings(ids, torch.arange(8)[None])
    with no_reads(monkeypatch):
        out = model.stack(hidden, mask).hidden  # (B, T, C)
        total, count, _ = linear_cross_entropy(out, model.lm_head.projection.weight, None, labels)
        total.backward()
    reference = torch.nn.functional.cross_entropy(model.lm_head(out).flatten(0, 1), labels.flatten(),
                                                  reduction="sum")
    torch.testing.assert_close(total, reference)
    assert count.tolist() == 14 and model.embeddings.tokens.weight.grad is not None
