"""Fine-tuning each architecture on each kind of task (``trilogy.objectives.task_adapters``): every pair either
says why it is unavailable or builds, batches, trains and predicts; batches resume and shard; the span and tag
alignments against hand examples; and a tiny model overfits a few rows through a head and text-to-text.

Legend: B batch, T length.
"""

from __future__ import annotations

import pytest
import torch

import trilogy
from trilogy import sizing
from trilogy.config import TINY_PRESETS, ModelConfig
from trilogy.data import train_tokenizer
from trilogy.data.tasks import Task, load_task
from trilogy.errors import TrilogyError
from trilogy.objectives import task_adapters as ta
from trilogy.objectives.task_examples import answer_tokens, encode_rows, split_budget, word_tokens

SEQ_LEN = 32
TASK_NAMES = {"classification": "polarity", "tagging": "pos", "span": "wordnet-span", "seq2seq": "plurals",
              "lm": "lm"}
CASES = [(arch, kind) for arch in ta.ARCHITECTURES for kind in TASK_NAMES]


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {kind: load_task(name, max_train=30, max_eval=4) for kind, name in TASK_NAMES.items()}


def row_text(row: dict) -> str:
    return " ".join(" ".join(v) if isinstance(v, list) else str(v) for v in row.values())


@pytest.fixture(scope="module")
def tokenizers(tasks) -> dict:
    texts = [row_text(row) for task in tasks.values() for row in task.train]
    return {arch: train_tokenizer(arch, texts, 400) for arch in ("encoder", "decoder", "encoder-decoder")}


def pretrained_config(arch: str, tokenizer) -> ModelConfig:
    family = ta.family(arch)
    return ta.architecture_config(arch, ModelConfig.from_preset(TINY_PRESETS[family],
                                                                vocab_size=tokenizer.get_vocab_size()))


def test_architecture_config():
    decoder = ModelConfig.from_preset("tiny-gpt2")
    assert ta.architecture_config("prefix-lm", decoder).prefix_lm
    assert not ta.architecture_config("decoder", decoder.replace(prefix_lm=True)).prefix_lm
    with pytest.raises(TrilogyError, match="needs a encoder-decoder config"):
        ta.architecture_config("encoder-decoder", decoder)
    with pytest.raises(TrilogyError, match="architecture must be one of"):
        ta.adaptation("t5", "lm")


@pytest.mark.parametrize(("arch", "kind"), CASES)
def test_every_adaptation(arch, kind, tasks, tokenizers):
    task, tokenizer = tasks[kind], tokenizers[ta.family(arch)]
    found = ta.adaptation(arch, kind)
    assert found.how
    base = pretrained_config(arch, tokenizer)
    if arch == "encoder" and kind in ("seq2seq", "lm"):
        assert found.unavailable
        with pytest.raises(TrilogyError, match=found.unavailable):
            ta.fine_tune_config(base, task, arch)
        return
    assert found.unavailable is None
    config = ta.fine_tune_config(base, task, arch)
    assert config.prefix_lm == (arch == "prefix-lm")
    model = trilogy.build(config)
    batch = next(ta.task_batches(task, arch, tokenizer, SEQ_LEN, 4, seed=0))
    assert ("decoder_input_ids" in batch) == (arch == "encoder-decoder")
    assert ("prefix_length" in batch) == (arch == "prefix-lm")
    assert sizing.training_flops(config, sizing.batch_rows(batch)) > 0
    loss, metrics = ta.task_loss(model, batch)
    assert torch.isfinite(loss) and metrics["targets"] > 0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    predictions = ta.predict(model, task, arch, tokenizer, task.eval, SEQ_LEN, 3)
    assert len(predictions) == len(task.eval)
    kinds = {"classification": str, "tagging": list, "span": str, "seq2seq": str, "lm": float}
    assert all(isinstance(p, kinds[kind]) for p in predictions)
    if kind == "tagging":
        assert [len(p) for p in predictions] == [len(row["tokens"]) for row in task.eval]
    value = ta.score(model, task, arch, tokenizer, SEQ_LEN, 3)
    assert value > 0 if kind == "lm" else 0 <= value <= 1


@pytest.mark.parametrize("arch", ["encoder", "encoder-decoder"])
def test_batches_resume_and_shard(arch, tasks, tokenizers):
    task, tokenizer = tasks["classification"], tokenizers[arch]
    batches = ta.task_batches(task, arch, tokenizer, SEQ_LEN, 4, seed=3)
    next(batches)
    state = batches.state_dict()
    expected = next(batches)
    resumed = ta.task_batches(task, arch, tokenizer, SEQ_LEN, 4, seed=3)
    resumed.load_state_dict(state)
    assert all(torch.equal(value, expected[key]) for key, value in next(resumed).items())
    whole = next(ta.task_batches(task, arch, tokenizer, SEQ_LEN, 4, seed=5))
    shards = [next(ta.task_batches(task, arch, tokenizer, SEQ_LEN, 4, seed=5, rank=r, world_size=2))
              for r in range(2)]
    assert torch.equal(torch.cat([s["labels"] for s in shards]), whole["labels"])
    assert all(float(s["loss_normalizer"]) == float(whole["loss_normalizer"]) / 2 for s in shards)


def test_span_offsets_hand_example(tokenizers):
    row = {"context": "the big dog barked", "question": "who barked?", "answer": "big dog", "answer_start": 4}
    offsets = [(0, 3), (4, 7), (8, 11), (12, 18)]
    assert answer_tokens(offsets, row) == (1, 2)
    assert answer_tokens(offsets[:2], row) is None  # the answer's end was cut off
    assert split_budget(5, 10, 9) == (5, 4) and split_budget(2, 10, 9) == (2, 7) and split_budget(2, 3, 9) == (2, 3)
    task = Task("hand", "span", "exact_match", True, [row], [row], "rarest-context-word", "", "", "")
    for arch in ("encoder", "decoder"):
        tokenizer = tokenizers[arch]
        (example,) = encode_rows([row], "span", arch, tokenizer, SEQ_LEN, [], training=True)
        start, end = example.labels
        first = example.context_start
        answer = row["context"][example.offsets[start - first][0]:example.offsets[end - first][1]]
        assert answer.strip() == "big dog"
        question = tokenizer.encode(row["question"], add_special_tokens=False).ids
        assert list(example.input_ids[first - len(question) - 1:first - 1]) == question
        assert ta.fine_tune_config(pretrained_config(arch, tokenizer), task, arch).head == "question-answering"


def test_tags_on_first_subwords(tokenizers):
    tokenizer = tokenizers["encoder"]
    words = ["Unbelievably", "tall", "dogs"]
    ids, starts = word_tokens(tokenizer, words)
    pieces = [tokenizer.id_to_token(i) for i in ids]
    expected, word = [], -1
    for position, piece in enumerate(pieces):
        if not piece.startswith("##"):
            word += 1
            expected.append(position)
    assert starts == expected and len(starts) == 3
    (example,) = encode_rows([{"tokens": words, "tags": ["RB", "JJ", "NNS"]}], "tagging", "encoder", tokenizer,
                             SEQ_LEN, ["JJ", "NNS", "RB"], training=True)
    assert example.word_starts == tuple(s + 1 for s in starts)  # after [CLS]
    labels = list(example.labels)
    assert [labels[s] for s in example.word_starts] == [2, 0, 1]
    assert sum(label != -100 for label in labels) == 3  # not on later subwords, [CLS] nor [SEP]


def overfit(arch: str, task: Task, tokenizer, max_steps: int) -> float:
    """Train on the task's train rows, scoring on them every 25 steps: the best score by ``max_steps``."""
    torch.manual_seed(0)
    model = trilogy.build(ta.fine_tune_config(pretrained_config(arch, tokenizer), task, arch).replace(dropout=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = ta.task_batches(task, arch, tokenizer, SEQ_LEN, len(task.train), seed=0)
    best = 0.0
    for step in range(1, max_steps + 1):
        loss, _ = ta.task_loss(model, next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            best = max(best, ta.score(model, task, arch, tokenizer, SEQ_LEN, 8))
            if best == 1.0:
                break
    return best


@pytest.mark.parametrize(("arch", "kind"), [("encoder", "classification"), ("decoder", "span"),
                                            ("encoder-decoder", "seq2seq")])
def test_overfits_a_handful(arch, kind, tasks, tokenizers):
    full, tokenizer = tasks[kind], tokenizers[ta.family(arch)]
    rows = [row for row in full.train if encode_rows([row], kind, arch, tokenizer, SEQ_LEN, full.label_names()
                                                     if kind == "classification" else [], training=True)][:4]
    task = Task("few", kind, full.metric, True, rows, rows, full.baseline, "", "", "")
    assert overfit(arch, task, tokenizer, 150) == 1.0


def test_trilogy_train_refuses_task_objectives():
    from trilogy.train.options import RunOptions

    with pytest.raises(TrilogyError, match="fine-tunes on a task's rows"):
        RunOptions(arch="encoder", objective="task-sequence-head")


@pytest.mark.parametrize(("arch", "room"), [("decoder", SEQ_LEN // 2), ("encoder-decoder", SEQ_LEN)])
def test_generation_has_the_room_the_target_had_in_training(arch, room, tasks, tokenizers, monkeypatch):
    """A decoder's target shares the sequence with its source; the encoder-decoder's has a sequence of its own,
    so a sentence's tags (several tokens each) are not cut off halfway."""
    task, tokenizer = tasks["tagging" if arch == "encoder-decoder" else "seq2seq"], tokenizers[ta.family(arch)]
    model = trilogy.build_model(ta.fine_tune_config(pretrained_config(arch, tokenizer), task, arch)).eval()
    asked = []
    original = model.generate

    def generate(*args, **kwargs):
        asked.append(kwargs["max_new_tokens"])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    with torch.no_grad():
        ta.predict(model, task, arch, tokenizer, task.eval[:2], SEQ_LEN, 2)
    assert asked and set(asked) == {room}
