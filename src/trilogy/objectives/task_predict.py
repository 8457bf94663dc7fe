"""Predictions of a fine-tuned model on task examples (``task_examples.py``), in the form ``Task.score`` takes:
labels, tag lists, answer strings, generated targets, or each row's total nats.

Legend: B batch, T length, L labels, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor, nn

from .batches import pad_rows
from .noise import IGNORE
from .task_examples import Example
from .task_objectives import Continuation, TokenHead, collate_examples, text_to_text_batch

#: the longest answer span a span head may predict, in tokens
MAX_ANSWER_TOKENS = 30


def chunks(examples: list[Example], batch_size: int) -> Iterator[list[Example]]:
    for i in range(0, len(examples), batch_size):
        yield examples[i:i + batch_size]


def to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def head_logits(model: nn.Module, examples: list[Example], pad: int) -> tuple[Tensor, dict[str, Tensor]]:
    """The task head's logits on right-padded examples, and the batch they came from."""
    batch = to(collate_examples(TokenHead(), [Example(e.input_ids, (), e.row, e.prefix_length) for e in examples],
                                pad), model.device)
    extra = {"prefix_length": batch["prefix_length"]} if "prefix_length" in batch else {}
    return model.run(batch["input_ids"], batch["attention_mask"], **extra).logits, batch


def sequence_labels(model: nn.Module, examples: list[Example], pad: int, label_names: list[str]) -> list[str]:
    logits, _ = head_logits(model, examples, pad)  # (B, L)
    return [label_names[i] for i in logits.argmax(-1).tolist()]


def word_tags(model: nn.Module, examples: list[Example], pad: int, label_names: list[str]) -> list[list[str]]:
    """Each word's tag: its first token's argmax; "" (never right) for a word cut off."""
    best = head_logits(model, examples, pad)[0].argmax(-1).tolist()  # (B, T)
    return [[label_names[row[s]] if s >= 0 else "" for s in example.word_starts]
            for row, example in zip(best, examples, strict=True)]


def span_answers(model: nn.Module, examples: list[Example], pad: int, contexts: list[str]) -> list[str]:
    """The context text between the best start and end tokens (end >= start, at most ``MAX_ANSWER_TOKENS``)."""
    logits, _ = head_logits(model, examples, pad)  # (B, T, 2)
    answers = []
    for row, example, context in zip(logits.float(), examples, contexts, strict=True):
        first, count = example.context_start, len(example.offsets)
        if count == 0:
            answers.append("")
            continue
        start, end = row[first:first + count, 0], row[first:first + count, 1]  # (N,)
        pair = start[:, None] + end[None, :]  # (N, N) score of (start i, end j)
        i, j = torch.arange(count)[:, None], torch.arange(count)[None, :]
        pair = pair.masked_fill((j < i) | (j - i >= MAX_ANSWER_TOKENS), float("-inf"))
        best_start, best_end = divmod(int(pair.argmax()), count)
        answers.append(context[example.offsets[best_start][0]:example.offsets[best_end][1]])
    return answers


def generated_continuations(model: nn.Module, examples: list[Example], tokenizer: Tokenizer,
                            special: dict[str, Any], max_new_tokens: int) -> list[str]:
    """A decoder's greedy continuations of left-padded prompts, up to the first eos."""
    pad, eos = special["pad"], special["eos"]
    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, example in enumerate(examples):
        ids[b, length - len(example.input_ids):] = torch.tensor(example.input_ids)
        mask[b, length - len(example.input_ids):] = 1
    out = model.generate(ids.to(model.device), mask.to(model.device), max_new_tokens=max_new_tokens,
                         eos_token_id=eos, pad_token_id=pad)
    return decode_until(out[:, length:], tokenizer, eos)


def generated_targets(model: nn.Module, examples: list[Example], tokenizer: Tokenizer, special: dict[str, Any],
                      max_new_tokens: int) -> list[str]:
    """An encoder-decoder's greedy targets of its sources, up to the first ``</s>``."""
    pad, eos = special["pad"], special["eos"]
    ids, mask = pad_rows([torch.tensor(e.input_ids) for e in examples], pad)
    out = model.generate(ids.to(model.device), mask.to(model.device), max_new_tokens=max_new_tokens,
                         eos_token_id=eos, pad_token_id=pad, decoder_start_token_id=special["decoder_start"])
    return decode_until(out[:, 1:], tokenizer, eos)


def decode_until(tokens: Tensor, tokenizer: Tokenizer, eos: int) -> list[str]:
    rows = []
    for row in tokens.tolist():
        rows.append(row[:row.index(eos)] if eos in row else row)
    return tokenizer.decode_batch(rows, skip_special_tokens=True)


def example_nats(model: nn.Module, examples: list[Example], special: dict[str, Any], text_to_text: bool
                 ) -> list[float]:
    """Each example's summed negative log-likelihood of its targets."""
    if text_to_text:
        batch = to(text_to_text_batch(examples, special), model.device)
        logits = model.run(batch["input_ids"], batch["decoder_input_ids"], batch["attention_mask"],
                           batch["decoder_attention_mask"]).logits  # (B, T, V)
    else:
        batch = to(collate_examples(Continuation(), examples, special["pad"]), model.device)
        extra = {"prefix_length": batch["prefix_length"]} if "prefix_length" in batch else {}
        logits = model.run(batch["input_ids"], batch["attention_mask"], **extra).logits  # (B, T, V)
    labels = batch["labels"]  # (B, T)
    nats = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")  # (B, T)
    return nats.masked_fill(labels == IGNORE, 0.0).sum(-1).tolist()


def ranked_labels(model: nn.Module, examples: list[Example], special: dict[str, Any], label_ids: list[list[int]],
                  label_names: list[str]) -> list[str]:
    """For each source, the label whose text (and ``</s>``) the encoder-decoder finds likeliest."""
    eos = special["eos"]
    candidates = [Example(e.input_ids, (*ids, eos)) for e in examples for ids in label_ids]
    nats = torch.tensor(example_nats(model, candidates, special, text_to_text=True))
    best = nats.view(len(examples), len(label_ids)).argmin(-1)  # (B,)
    return [label_names[i] for i in best.tolist()]

