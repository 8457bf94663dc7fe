"""Fine-tuning each architecture on each kind of task the way that architecture is used for it, and scoring it.

Four architectures (``ARCHITECTURES``): the encoder (BERT), the decoder (GPT), the prefix LM (the decoder with
``prefix_lm``: its prefix read bidirectionally) and the encoder-decoder (T5). The adaptations
(``adaptation(arch, kind)``; the token layouts and truncation are in ``task_examples.py``):

================  ====================================  ====================================  ==========================
kind              encoder                               decoder / prefix LM                   encoder-decoder
================  ====================================  ====================================  ==========================
classification    sequence head on the pooled [CLS]     sequence head on the last real token  the label as target text;
                                                        (the text then eos); prefix: all      predicted by ranking the
                                                                                              labels by likelihood
tagging           token head, each word's tag on its    the same; prefix: the whole sentence  the tags as a space-
                  first subword                                                               separated target, greedy
span              span head on [CLS] q [SEP] c [SEP]    span head on q eos c (the question    question </s> context ->
                                                        first, so the context has read it);   the answer, greedy
                                                        prefix: all
seq2seq           unavailable: it does not write text   source eos -> target eos, loss on     source -> target, greedy
                                                        the target; prefix: source + eos;
                                                        greedy
lm                unavailable: no probability of a      eos text, every token predicted;      </s> -> the text (the
                  whole text                            prefix: the eos alone (= causal)      conditional LM)
================  ====================================  ====================================  ==========================

Text-to-text classification ranks the label names by the model's likelihood of each (label + ``</s>``) rather
than greedy-decoding: a tiny model's generations seldom spell a label exactly, its ranking of them still says
what it learned. Span heads predict the best (start, end) pair of context tokens with start <= end < start +
``MAX_ANSWER_TOKENS``, the answer being the context's characters between their offsets. Greedy decoding writes
at most the tokens its layout gave the target in training: ``seq_len // 2`` for a decoder (source and target
share the sequence), ``seq_len`` for the encoder-decoder (``seq_len - 1`` target tokens and ``</s>``; with half of
it, a sentence's tags were cut off after about eight).

``task_batches`` pre-encodes the rows into examples and serves them through ``Batches`` with the objectives of
``task_objectives.py`` (registered as ``task-sequence-head``, ``task-token-head``, ``task-span-head``,
``task-continuation``, ``task-text-to-text``), so fine-tuning batches are seeded, resumable, sharded and carry
``loss_normalizer`` like pre-training's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from ..config import ModelConfig
from ..data.task_files import Row
from ..data.tasks import KINDS, Task
from ..errors import TrilogyError
from . import task_predict
from .batches import Batches
from .registry import get_objective
from .task_examples import UNAVAILABLE, Example, encode_rows, specials

ARCHITECTURES = ("encoder", "decoder", "prefix-lm", "encoder-decoder")
MAX_ANSWER_TOKENS = task_predict.MAX_ANSWER_TOKENS

_HEADS = {"classification": "sequence-classification", "tagging": "token-classification",
          "span": "question-answering", "seq2seq": "lm", "lm": "lm"}
_HOW = {
    ("encoder", "classification"): "a sequence head on the pooled first token ([CLS])",
    ("decoder", "classification"): "a sequence head on the last real token (the text then eos)",
    ("prefix-lm", "classification"): "a sequence head on the last real token, the whole text read as the prefix",
    ("encoder-decoder", "classification"): "text-to-text: the label as target text, predicted by ranking the "
                                           "labels by likelihood",
    ("encoder", "tagging"): "a token head, each word's tag on its first subword",
    ("decoder", "tagging"): "a token head, each word's tag on its first subword (causal: left context only)",
    ("prefix-lm", "tagging"): "a token head, each word's tag on its first subword, the sentence as the prefix",
    ("encoder-decoder", "tagging"): "text-to-text: the tags as a space-separated target, greedy",
    ("encoder", "span"): "a span head (start/end per token) on [CLS] question [SEP] context [SEP]",
    ("decoder", "span"): "a span head on question eos context (question first, so the context has read it)",
    ("prefix-lm", "span"): "a span head on question eos context, all of it as the prefix",
    ("encoder-decoder", "span"): "text-to-text: question </s> context -> the answer, greedy",
    ("decoder", "seq2seq"): "prompt -> continuation: source eos target eos, loss on the target, greedy",
    ("prefix-lm", "seq2seq"): "prompt -> continuation, the source and eos as the prefix, greedy",
    ("encoder-decoder", "seq2seq"): "source -> target, greedy",
    ("decoder", "lm"): "each text's nats under the causal LM (after an eos)",
    ("prefix-lm", "lm"): "each text's nats with the leading eos alone as the prefix (= causal)",
    ("encoder-decoder", "lm"): "the conditional LM: the text as the target of an empty source (</s>)",
}


@dataclass(frozen=True)
class Adaptation:
    """How an architecture is fine-tuned on a kind of task."""

    arch: str
    kind: str
    how: str  # one line for the report
    unavailable: str | None  # why this architecture cannot do this kind of task the natural way; None = it can


def adaptation(arch: str, kind: str) -> Adaptation:
    check(arch, kind)
    reason = UNAVAILABLE.get((arch, kind))
    return Adaptation(arch, kind, reason and f"unavailable: {reason}" or _HOW[(arch, kind)], reason)


def check(arch: str, kind: str) -> None:
    if arch not in ARCHITECTURES:
        raise TrilogyError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    if kind not in KINDS:
        raise TrilogyError(f"task kind must be one of {', '.join(KINDS)}, got {kind!r}")


def family(arch: str) -> str:
    """The ``ModelConfig.arch`` of an architecture: the prefix LM is a decoder."""
    return "decoder" if arch == "prefix-lm" else arch


def architecture_config(arch: str, config: ModelConfig) -> ModelConfig:
    """The config of ``arch`` from its family's ``config``: "prefix-lm" is the decoder with ``prefix_lm``."""
    check(arch, "lm")
    if config.arch != family(arch):
        raise TrilogyError(f"architecture {arch!r} needs a {family(arch)} config, got a {config.arch} one")
    return config.replace(prefix_lm=arch == "prefix-lm") if config.arch == "decoder" else config


def fine_tune_config(pretrained: ModelConfig, task: Task, arch: str) -> ModelConfig:
    """``pretrained``'s config with the head (and ``num_labels``) that ``arch``'s adaptation to ``task`` trains."""
    found = adaptation(arch, task.kind)
    if found.unavailable:
        raise TrilogyError(f"a{'n' if arch[0] in 'aeiou' else ''} {arch} cannot do {task.name}: {found.unavailable}")
    config = architecture_config(arch, pretrained)
    head = "lm" if arch == "encoder-decoder" else _HEADS[task.kind]
    if head in ("sequence-classification", "token-classification"):
        return config.replace(head=head, num_labels=len(task.label_names()))
    return config.replace(head=head)


def objective_name(arch: str, kind: str) -> str:
    """The registered objective whose batches ``arch``'s adaptation to ``kind`` trains on."""
    if arch == "encoder-decoder":
        return "task-text-to-text"
    return {"classification": "task-sequence-head", "tagging": "task-token-head", "span": "task-span-head",
            "seq2seq": "task-continuation", "lm": "task-continuation"}[kind]


def label_names(task: Task) -> list[str]:
    return task.label_names() if task.kind in ("classification", "tagging") else []


def task_examples(task: Task, arch: str, tokenizer: Tokenizer, seq_len: int, rows: list[Row] | None = None,
                  training: bool = True) -> list[Example]:
    """The examples of ``rows`` (default the train rows) in ``arch``'s layout."""
    found = adaptation(arch, task.kind)
    if found.unavailable:
        raise TrilogyError(f"{arch} cannot do {task.kind} tasks: {found.unavailable}")
    return encode_rows(task.train if rows is None else rows, task.kind, arch, tokenizer, seq_len, label_names(task),
                       training)


def task_batches(task: Task, arch: str, tokenizer: Tokenizer, seq_len: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> Batches:
    """An endless, shuffled, resumable, sharded stream of training batches of ``task.train`` for ``arch``:
    ``input_ids``, ``attention_mask``, ``labels``, ``loss_normalizer``; ``decoder_input_ids`` and
    ``decoder_attention_mask`` for the encoder-decoder; ``prefix_length`` (B,) for the prefix LM."""
    examples = task_examples(task, arch, tokenizer, seq_len)
    if not examples:
        raise TrilogyError(f"no train row of {task.name} fits seq_len {seq_len}")
    return Batches(objective_name(arch, task.kind), examples, tokenizer, seq_len, batch_size, seed, rank=rank,
                   world_size=world_size)


def task_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """``train.loop``'s ``loss_fn`` for task batches: the summed loss over this shard's targets divided by
    ``loss_normalizer``, and metrics ``loss_sum`` and ``targets`` (``correct`` and ``accuracy`` without grad)."""
    text_to_text = "decoder_input_ids" in batch
    objective = get_objective("task-text-to-text" if text_to_text else "task-token-head")
    out = objective.run(model, batch)
    targets = int(out.label_count)
    loss_sum = out.loss * targets
    metrics: dict[str, float] = {"loss_sum": float(loss_sum.detach()), "targets": targets}
    if out.label_correct is not None:
        metrics["correct"] = int(out.label_correct)
        metrics["accuracy"] = metrics["correct"] / max(targets, 1)
    return loss_sum / batch["loss_normalizer"], metrics


@torch.no_grad()
def predict(model: nn.Module, task: Task, arch: str, tokenizer: Tokenizer, rows: list[Row], seq_len: int,
            batch_size: int) -> list[Any]:
    """One prediction per row in the form ``task.score`` takes: a label, a tag list, an answer or target string,
    or (lm) the row's total nats."""
    was_training = model.training
    model.eval()
    try:
        return _predict(model, task, arch, tokenizer, rows, seq_len, batch_size)
    finally:
        model.train(was_training)


def _predict(model: nn.Module, task: Task, arch: str, tokenizer: Tokenizer, rows: list[Row], seq_len: int,
             batch_size: int) -> list[Any]:
    examples = task_examples(task, arch, tokenizer, seq_len, rows, training=False)
    special, names, kind = specials(tokenizer, arch), label_names(task), task.kind
    text_to_text = arch == "encoder-decoder"
    if kind == "lm":
        totals = [0.0] * len(rows)
        for chunk in task_predict.chunks(examples, batch_size):
            for example, nats in zip(chunk, task_predict.example_nats(model, chunk, special, text_to_text),
                                     strict=True):
                totals[example.row] += nats
        return totals
    predictions: list[Any] = []
    label_ids = [tokenizer.encode(name, add_special_tokens=False).ids for name in names]
    for chunk in task_predict.chunks(examples, batch_size):
        if text_to_text and kind == "classification":
            predictions += task_predict.ranked_labels(model, chunk, special, label_ids, names)
        elif text_to_text:
            predictions += task_predict.generated_targets(model, chunk, tokenizer, special, seq_len)
        elif kind == "classification":
            predictions += task_predict.sequence_labels(model, chunk, special["pad"], names)
        elif kind == "tagging":
            predictions += task_predict.word_tags(model, chunk, special["pad"], names)
        elif kind == "span":
            predictions += task_predict.span_answers(model, chunk, special["pad"],
                                                     [rows[e.row]["context"] for e in chunk])
        else:
            predictions += task_predict.generated_continuations(model, chunk, tokenizer, special, seq_len // 2)
    if text_to_text and kind == "tagging":
        predictions = [fitted(p.split(), len(row["tokens"])) for p, row in zip(predictions, rows, strict=True)]
    return predictions


def fitted(tags: list[str], count: int) -> list[str]:
    """Generated tags cut or padded (with "", never right) to the sentence's word count."""
    return (tags + [""] * count)[:count]


def score(model: nn.Module, task: Task, arch: str, tokenizer: Tokenizer, seq_len: int, batch_size: int) -> float:
    """``task``'s metric of ``model``'s predictions on its eval rows."""
    return task.score(predict(model, task, arch, tokenizer, task.eval, seq_len, batch_size))
