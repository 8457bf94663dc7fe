"""Evaluation on the validation split, the same numbers during training and from ``trilogy eval``:

- every objective: ``loss``, the mean cross-entropy per target token (nats), and ``accuracy`` (argmax hits;
  for MLM this is the masked-token accuracy);
- causal LM: ``nats_per_char`` and ``bits_per_char``, the summed loss divided by the characters of the text it
  covers, comparable across tokenizers;
- seq2seq: ``exact_match`` and ``word_f1`` of greedy generations against the targets (optionally with a
  repetition penalty, Hugging Face's ``repetition_penalty``: 1.0 = plain greedy);
- MLM: ``blank_accuracy``, the accuracy at the targets the input shows as [MASK].

Each objective says what it adds (``Objective.eval_batch``, ``eval_metrics`` in ``trilogy.objectives``).

Ranks split the validation batches between them and add up their sums, so every rank returns the same figures.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer
from torch import nn

from ..data import Corpus
from ..objectives import Batches, compute_loss, get_objective
from .distributed import Distributed


@torch.no_grad()
def evaluate(model: nn.Module, objective: str, corpus: Corpus, tokenizer: Tokenizer, seq_len: int,
             batch_size: int, max_batches: int | None, dist: Distributed, label_names: list[str] | None = None,
             repetition_penalty: float = 1.0) -> dict:
    """Metrics of ``model`` on ``corpus.validation``: one pass in order (no shuffling; MLM and span noise drawn
    from a fixed seed, so every evaluation sees the same inputs), stopped after ``max_batches`` global batches
    of ``batch_size`` rows per rank. The objective adds its own metrics (``Objective.eval_metrics``)."""
    task = get_objective(objective)
    was_training = model.training
    model.eval()
    batches = Batches(objective, corpus.validation, tokenizer, seq_len, batch_size * dist.world_size, seed=0,
                      rank=dist.rank, world_size=dist.world_size, epochs=1, shuffle=False, label_names=label_names)
    names = ("loss_sum", "targets", "correct", *task.eval_sums)
    sums = torch.zeros(len(names), dtype=torch.float64)
    complete = True
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            complete = False
            break
        if batch["input_ids"].size(0) == 0:  # the last, short global batch may leave a rank without rows
            continue
        batch = {k: v.to(dist.device) for k, v in batch.items()}
        _, metrics = compute_loss(objective, model, batch)
        extra = task.eval_batch(model, batch, tokenizer, repetition_penalty)
        sums += torch.tensor([metrics["loss_sum"], metrics["targets"], metrics["correct"], *extra],
                             dtype=torch.float64)
    model.train(was_training)
    totals = dict(zip(names, dist.sum(sums).tolist(), strict=True))
    targets = max(totals["targets"], 1)
    result = {"loss": totals["loss_sum"] / targets, "accuracy": totals["correct"] / targets,
              "targets": int(totals["targets"])}
    result.update(task.eval_metrics(totals, corpus, tokenizer, complete))
    return result
