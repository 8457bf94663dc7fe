"""The task heads of each family: sequence classification (BERT's pooled first token, a causal model's last
real token), token classification and span extraction (start and end logits per token). Each runs on padded
batches (left and right for the decoders) as it runs unpadded, its loss is the cross-entropy of the logits it
returns, gradients reach the head and the stack, and a tiny model learns a trivial task through it.
The converters' parity with transformers' classes is in ``test_convert_parity.py``.

Legend: B batch, T length, L labels.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import trilogy
from trilogy.config import HEADS, ModelConfig
from trilogy.errors import TrilogyError

from .conftest import tiny
from .convert_helpers import perturb

TASKS = ("sequence-classification", "token-classification", "question-answering")
FAMILIES = ("tiny-bert", "tiny-gpt2", "tiny-llama")
CASES = [(preset, head, side) for preset in FAMILIES for head in TASKS
         for side in (("right",) if preset == "tiny-bert" else ("left", "right"))]
LABELS = 3


def pad(rows: list[Tensor], side: str) -> tuple[Tensor, Tensor]:
    """Rows of different lengths -> ids (B, T) padded with 0 on ``side``, attention mask (B, T) 1 = real."""
    length = max(len(row) for row in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for b, row in enumerate(rows):
        real = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        ids[b, real], mask[b, real] = row, 1
    return ids, mask


def real_positions(mask: Tensor) -> list[Tensor]:
    return [row.nonzero().squeeze(-1) for row in mask]  # each (n,)


def some_labels(head: str, mask: Tensor) -> Tensor:
    """Labels of ``head`` for the batch ``mask`` (B, T) marks: class ids (B,), tags (B, T) with -100 at padding
    and at one real token, or start and end indices (B, 2) of real tokens."""
    generator = torch.Generator().manual_seed(3)
    if head == "sequence-classification":
        return torch.randint(0, LABELS, (mask.size(0),), generator=generator)
    if head == "token-classification":
        tags = torch.randint(0, LABELS, mask.shape, generator=generator).masked_fill(mask == 0, -100)
        tags[0, real_positions(mask)[0][0]] = -100
        return tags
    return torch.stack([real[torch.tensor([1, -2])] for real in real_positions(mask)])  # (B, 2)


def expected_loss(head: str, logits: Tensor, labels: Tensor) -> Tensor:
    if head == "question-answering":  # the mean of the start and end cross-entropies over positions
        return (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("preset, head, side", CASES)
def test_a_head_runs_on_padded_rows_as_on_each_row_alone(preset, head, side):
    """Each row's logits (at its real positions) are those of the row run alone, unpadded: the sequence
    classifier reads the pooled first token (BERT) or the last real token (decoders), wherever the padding."""
    model = tiny(preset, head=head, num_labels=LABELS)
    rows = [torch.randint(3, 1000, (n,)) for n in (7, 4, 6)]
    ids, mask = pad(rows, side)
    with torch.no_grad():
        logits = model.run(ids, mask).logits
        alone = [model.run(row[None]).logits[0] for row in rows]
    width = {"sequence-classification": (LABELS,), "token-classification": (ids.size(1), LABELS),
             "question-answering": (ids.size(1), 2)}[head]
    assert logits.shape == (len(rows), *width)
    for b, real in enumerate(real_positions(mask)):
        ours = logits[b] if head == "sequence-classification" else logits[b, real]
        torch.testing.assert_close(ours, alone[b], atol=1e-5, rtol=1e-4)
    if head == "question-answering":  # no span starts or ends in the padding
        assert torch.isneginf(logits[mask == 0]).all() and torch.isfinite(logits[mask == 1]).all()


@pytest.mark.parametrize("preset, head, side", CASES)
def test_the_loss_is_the_cross_entropy_of_the_returned_logits(preset, head, side):
    model = tiny(preset, head=head, num_labels=LABELS)
    ids, mask = pad([torch.randint(3, 1000, (n,)) for n in (7, 4, 6)], side)
    labels = some_labels(head, mask)
    out = model.run(ids, mask, labels=labels)
    torch.testing.assert_close(out.loss, expected_loss(head, out.logits, labels))
    predicted = out.logits.argmax(1 if head == "question-answering" else -1)
    if head == "question-answering":  # a span is right when both its ends are
        assert out.label_count == len(labels) and out.label_correct == (predicted == labels).all(-1).sum()
    else:
        assert out.label_count == (labels != -100).sum() and out.label_correct == (predicted == labels).sum()
    out.loss.backward()
    for name in ("head.proj.weight", "embeddings.tokens.weight", "stack.layers.0.self_attn.qkv.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_the_last_real_token_comes_from_the_mask_not_the_pad_id():
    """A real token that is the pad id (GPT-2 pads with its end-of-text token) still ends its row: trilogy reads
    the attention mask, where transformers' sequence classifiers look for the rightmost non-pad id."""
    model = tiny("tiny-gpt2", head="sequence-classification", num_labels=LABELS)
    row = torch.tensor([5, 6, 7, model.config.pad_token_id])
    ids, mask = pad([row, torch.tensor([9, 10])], "right")
    with torch.no_grad():
        torch.testing.assert_close(model.run(ids, mask).logits[0], model.run(row[None]).logits[0])


def test_the_structure_says_what_a_sequence_classifier_reads():
    bert = ModelConfig.from_preset("tiny-bert", head="sequence-classification").structure
    gpt = ModelConfig.from_preset("tiny-gpt2", head="sequence-classification").structure
    assert (bert.summary, bert.pooler, bert.bare_classifier) == ("pooler", True, False)
    assert (gpt.summary, gpt.pooler, gpt.bare_classifier) == ("last", False, True)
    for preset in FAMILIES:
        for head, kind in zip(TASKS[1:], ("token", "span"), strict=True):
            structure = ModelConfig.from_preset(preset, head=head).structure
            assert (structure.classifier, structure.summary) == (kind, None)
    model = tiny("tiny-gpt2", head="sequence-classification")
    assert model.head.proj.bias is None and model.pooler is None


@pytest.mark.parametrize("head", TASKS)
@pytest.mark.parametrize("preset", FAMILIES)
def test_a_task_head_initialises_itself(preset, head):
    """The head's linear layer starts as the model's other projections do: N(0, 0.02), biases at 0."""
    model = trilogy.build(preset, head=head, num_labels=LABELS)
    with torch.no_grad():
        for param in model.head.parameters():
            param.fill_(5.0)
    model.init_weights()
    weight, bias = model.head.proj.weight.detach(), model.head.proj.bias
    assert 0.01 < float(weight.std()) < 0.03 and abs(float(weight.mean())) < 0.01
    assert bias is None or not bias.any()


def test_the_encoder_decoder_has_no_task_heads():
    """T5 does these tasks text-to-text through its LM head; asking for a task head lists the heads it has."""
    assert HEADS["encoder-decoder"] == ("none", "lm")
    for head in TASKS:
        with pytest.raises(TrilogyError, match=r"head \(for arch 'encoder-decoder'\) must be one of 'none', 'lm'"):
            ModelConfig.from_preset("tiny-t5", head=head)


@pytest.mark.parametrize("head, bad, message", [
    ("sequence-classification", torch.zeros(3, 7, dtype=torch.long), r"expected \(3,\): a class id per sequence"),
    ("token-classification", torch.zeros(3, dtype=torch.long), r"expected \(3, 7\): a class id per token"),
    ("question-answering", torch.zeros(3, dtype=torch.long), r"expected \(3, 2\): each row's start and end"),
    ("question-answering", torch.tensor([[0, 1], [0, 7], [0, 1]]), r"in \[0, 7\) and not padding"),
    ("question-answering", torch.tensor([[0, 1], [0, 5], [0, 1]]), r"in \[0, 7\) and not padding"),
])
@pytest.mark.parametrize("preset", ["tiny-bert", "tiny-llama"])
def test_bad_labels_are_refused_in_one_line(preset, head, bad, message):
    model = tiny(preset, head=head, num_labels=LABELS)
    ids, mask = pad([torch.randint(3, 1000, (n,)) for n in (7, 4, 6)], "right")  # row 1: 4 real tokens
    with pytest.raises(TrilogyError, match=message) as error:
        model.run(ids, mask, labels=bad)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("head", TASKS)
@pytest.mark.parametrize("preset", FAMILIES)
def test_a_task_head_saves_and_loads_back(tmp_path, preset, head):
    """In the Hugging Face layout, which transformers has for every one: a Llama with a span head as
    MistralForQuestionAnswering (LlamaForQuestionAnswering's body sits under another prefix; Mistral without a
    sliding window computes what Llama does)."""
    model = tiny(preset, head=head, num_labels=LABELS)
    perturb(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    mistral = (preset, head) == ("tiny-llama", "question-answering")
    assert (saved["model_type"] == "mistral") == mistral and saved["model_type"] != "trilogy"
    loaded = trilogy.from_pretrained(tmp_path)
    ids, mask = pad([torch.randint(3, 1000, (n,)) for n in (7, 4)], "right")
    torch.testing.assert_close(loaded(ids, attention_mask=mask), model(ids, attention_mask=mask), rtol=0, atol=0)


def task_batch(head: str, batch: int, generator: torch.Generator, side: str) -> tuple[Tensor, Tensor, Tensor]:
    """Rows of 6 to 12 tokens from 9..39, padded on ``side``. Sequence: does token 7 appear (in half the rows)?
    Tokens: is this token 7? Span: the positions of the 7 and the later 8 that every row holds."""
    rows = []
    for n in torch.randint(6, 13, (batch,), generator=generator).tolist():
        row = torch.randint(9, 40, (n,), generator=generator)
        start = int(torch.randint(0, n - 1, (1,), generator=generator))
        end = int(torch.randint(start + 1, n, (1,), generator=generator))
        if head == "question-answering" or torch.rand(1, generator=generator) < 0.5:
            row[start] = 7
        if head == "question-answering":
            row[end] = 8
        rows.append(row)
    ids, mask = pad(rows, side)
    if head == "sequence-classification":
        return ids, mask, (ids == 7).any(-1).long()
    if head == "token-classification":
        return ids, mask, (ids == 7).long().masked_fill(mask == 0, -100)
    return ids, mask, torch.stack([(ids == 7).int().argmax(-1), (ids == 8).int().argmax(-1)], -1)  # (B, 2)


@pytest.mark.parametrize("head", TASKS)
@pytest.mark.parametrize("preset", FAMILIES)
def test_a_tiny_model_learns_a_trivial_task(preset, head):
    """40 steps of AdamW on padded batches (the decoders left-padded) take each head to >= 90% right."""
    generator = torch.Generator().manual_seed(0)
    side = "right" if preset == "tiny-bert" else "left"
    model = trilogy.build(preset, head=head, dropout=0.0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        ids, mask, labels = task_batch(head, 32, generator, side)
        loss = model.run(ids, mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ids, mask, labels = task_batch(head, 64, generator, side)
    with torch.no_grad():
        out = model.eval().run(ids, mask, labels=labels)
    assert out.label_correct / out.label_count >= 0.9, (float(out.loss), int(out.label_correct))
