"""The fused, chunked linear + cross-entropy equals the plain path in value and in every gradient."""

import pytest
import torch
import torch.nn.functional as F

from trilogy.blocks.loss import linear_cross_entropy

from .conftest import tiny


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 7, 4096])
def test_matches_plain_cross_entropy(with_bias, chunk_rows):
    hidden = torch.randn(3, 11, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    bias = torch.randn(50, requires_grad=True) if with_bias else None
    labels = torch.randint(0, 50, (3, 11))
    labels[0, :4] = -100
    total, count, _ = linear_cross_entropy(hidden, weight, bias, labels, chunk_rows=chunk_rows)
    (total / count * 2.5).backward()
    grads = [hidden.grad, weight.grad] + ([bias.grad] if with_bias else [])
    for t in [hidden, weight] + ([bias] if with_bias else []):
        t.grad = None
    plain = F.cross_entropy(F.linear(hidden, weight, bias).reshape(-1, 50), labels.reshape(-1), ignore_index=-100)
    (plain * 2.5).backward()
    torch.testing.assert_close(total / count, plain)
    assert count == (labels != -100).sum()
    for ours, ref in zip(grads, [hidden.grad, weight.grad] + ([bias.grad] if with_bias else []), strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bert", "tiny-t5"])
def test_model_loss_equals_cross_entropy_of_its_logits(name):
    model = tiny(name)
    ids = torch.randint(5, 1000, (2, 9))
    labels = torch.randint(5, 1000, (2, 9))
    labels[:, ::3] = -100
    args = (ids, ids) if model.config.arch == "encoder-decoder" else (ids,)
    logits = model.run(*args).logits
    out = model.run(*args, labels=labels)
    assert out.logits is None
    expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    assert out.label_count == (labels != -100).sum()


def test_classifier_heads_take_labels():
    model = tiny("tiny-bert", head="sequence-classification", num_labels=3)
    ids = torch.randint(5, 1000, (4, 6))
    labels = torch.tensor([0, 2, 1, 1])
    out = model.run(ids, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bert", "tiny-t5", "tiny-llama"])
def test_activation_checkpointing_gives_identical_gradients(name):
    """With dropout on: checkpointing replays the same random numbers, so the gradients are the same."""
    model = tiny(name).train()
    ids = torch.randint(5, 1000, (2, 10))
    args = (ids, ids) if model.config.arch == "encoder-decoder" else (ids,)

    def grads(model):
        torch.manual_seed(1)
        model.run(*args, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    recomputing = tiny(name, checkpoint_activations=True).train()
    recomputing.load_state_dict(model.state_dict())
    plain, recomputed = grads(model), grads(recomputing)
    assert plain.keys() == recomputed.keys()
    for key in plain:
        torch.testing.assert_close(plain[key], recomputed[key], atol=0, rtol=0)


def test_argmax_hits_are_counted_when_evaluating_only():
    hidden = torch.randn(20, 16)
    weight = torch.randn(50, 16, requires_grad=True)
    labels = torch.randint(0, 50, (20,))
    labels[:5] = F.linear(hidden[:5], weight).argmax(-1)  # at least five hits
    labels[-3:] = -100
    expected = int((F.linear(hidden, weight).argmax(-1) == labels).sum())
    with torch.no_grad():
        total, _, correct = linear_cross_entropy(hidden, weight, None, labels, chunk_rows=7)
    assert int(correct) == expected >= 5 and total.grad_fn is None
    total, _, correct = linear_cross_entropy(hidden, weight, None, labels, chunk_rows=7)
    assert correct is None and total.grad_fn is not None  # training skips the argmax
