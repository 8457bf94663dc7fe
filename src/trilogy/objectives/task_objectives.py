"""The fine-tuning objectives on task examples (``task_examples.py``), one per kind of batch, registered so that
``Batches`` makes their batches deterministic, resumable and sharded. Each trains several families, so their
``arch`` is empty and ``families`` names them; ``trilogy train`` refuses them (they read a task's rows, not a
corpus).

Legend: B batch, T length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .batches import Batches, pad_rows
from .noise import IGNORE
from .registry import Objective, register
from .task_examples import Example

if TYPE_CHECKING:
    from ..models import ModelOutput


class TaskObjective(Objective):
    """Examples padded to the longest in the global batch: ``input_ids``, ``attention_mask``, ``labels`` and,
    for the prefix LM, ``prefix_length`` (B,)."""

    corpus_kind = "task"
    needs: tuple[str, ...] = ("pad",)
    pads = True

    def lengths(self, batches: Batches, rows: list[Any]) -> list[tuple[int, ...]]:
        return [(len(example.input_ids),) for example in rows]

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        return collate_examples(self, rows, batches.special["pad"])

    def labels(self, examples: list[Example]) -> Tensor:
        """Per-position targets (B, T), -100 where nothing is predicted and at padding."""
        labels, _ = pad_rows([torch.tensor(example.labels) for example in examples], IGNORE)
        return labels

    def run(self, model: nn.Module, batch: dict[str, Tensor]) -> ModelOutput:
        extra = {"prefix_length": batch["prefix_length"]} if "prefix_length" in batch else {}
        return model.run(batch["input_ids"], batch["attention_mask"], labels=batch["labels"], **extra)


class SequenceHead(TaskObjective):
    """Class indices (B,) for a sequence classifier."""

    name, head = "task-sequence-head", "sequence-classification"
    families = ("encoder", "decoder")

    def labels(self, examples: list[Example]) -> Tensor:
        return torch.tensor([example.labels for example in examples])  # (B,)


class TokenHead(TaskObjective):
    """Tags (B, T) on each word's first token, -100 elsewhere, for a token classifier."""

    name, head = "task-token-head", "token-classification"
    families = ("encoder", "decoder")


class SpanHead(TaskObjective):
    """Start and end token indices (B, 2) for a span head."""

    name, head = "task-span-head", "question-answering"
    families = ("encoder", "decoder")

    def labels(self, examples: list[Example]) -> Tensor:
        return torch.tensor([example.labels for example in examples])  # (B, 2)

    def count_targets(self, labels: Tensor) -> int:
        return labels.size(0)  # one span per row


class Continuation(TaskObjective):
    """A decoder's causal LM on prompt + continuation (or a text): labels (B, T) already shifted."""

    name, head = "task-continuation", "lm"
    families = ("decoder",)


class TextToText(TaskObjective):
    """An encoder-decoder's source -> target, the decoder reading the target shifted right."""

    name, head = "task-text-to-text", "lm"
    families = ("encoder-decoder",)
    needs = ("pad", "decoder_start")

    def lengths(self, batches: Batches, rows: list[Any]) -> list[tuple[int, ...]]:
        return [(len(example.input_ids), len(example.labels)) for example in rows]

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        return text_to_text_batch(rows, batches.special)

    def run(self, model: nn.Module, batch: dict[str, Tensor]) -> ModelOutput:
        return model.run(batch["input_ids"], batch["decoder_input_ids"], batch["attention_mask"],
                         batch["decoder_attention_mask"], labels=batch["labels"])


def collate_examples(objective: TaskObjective, examples: list[Example], pad: int) -> dict[str, Tensor]:
    """The batch of a head or continuation objective's examples, right-padded."""
    input_ids, attention_mask = pad_rows([torch.tensor(example.input_ids) for example in examples], pad)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": objective.labels(examples)}
    if examples[0].prefix_length is not None:
        batch["prefix_length"] = torch.tensor([example.prefix_length for example in examples])  # (B,)
    return batch


def text_to_text_batch(examples: list[Example], special: dict[str, Any]) -> dict[str, Tensor]:
    """An encoder-decoder batch: sources (B, S), targets as labels (B, T) and shifted right as decoder input."""
    pad, start = special["pad"], special["decoder_start"]
    input_ids, attention_mask = pad_rows([torch.tensor(example.input_ids) for example in examples], pad)
    targets = [torch.tensor(example.labels) for example in examples]
    labels, decoder_attention_mask = pad_rows(targets, IGNORE)
    decoder_input_ids, _ = pad_rows([torch.cat([torch.tensor([start]), t[:-1]]) for t in targets], pad)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "decoder_input_ids": decoder_input_ids, "decoder_attention_mask": decoder_attention_mask}


for _objective in (SequenceHead(), TokenHead(), SpanHead(), Continuation(), TextToText()):
    register(_objective)
