"""Evaluation on the validation split, the same numbers during training and from ``trilogy eval``:

- every objective: ``loss``, the mean cross-entropy per target token (nats), and ``accuracy`` (argmax hits;
  for MLM this is the masked-token accuracy);
- causal LM: ``nats_per_char`` and ``bits_per_char``, the summed loss divided by the characters of the text it
  covers, comparable across tokenizers;
- seq2seq: ``exact_match`` and ``word_f1`` of greedy generations against the targets (optionally with a
  repetition penalty, Hugging Face's ``repetition_penalty``: 1.0 = plain greedy).

Ranks split the validation batches between them and add up their sums, so every rank returns the same figures.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import torch
from tokenizers import Tokenizer
from torch import nn

from ..data import Corpus, special_tokens
from ..objectives import IGNORE, Batches, compute_loss
from .distributed import Distributed


@torch.no_grad()
def evaluate(model: nn.Module, objective: str, corpus: Corpus, tokenizer: Tokenizer, seq_len: int,
             batch_size: int, max_batches: int | None, dist: Distributed, label_names: list[str] | None = None,
             repetition_penalty: float = 1.0) -> dict:
    """Metrics of ``model`` on ``corpus.validation``: one pass in order (no shuffling; MLM and span noise drawn
    from a fixed seed, so every evaluation sees the same inputs), stopped after ``max_batches`` global batches
    of ``batch_size`` rows per rank."""
    was_training = model.training
    model.eval()
    batches = Batches(objective, corpus.validation, tokenizer, seq_len, batch_size * dist.world_size, seed=0,
                      rank=dist.rank, world_size=dist.world_size, epochs=1, shuffle=False, label_names=label_names)
    # loss_sum, targets, correct, exact, word_f1, sequences, blanks (mlm), blanks right (mlm)
    sums = torch.zeros(8, dtype=torch.float64)
    complete = True
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            complete = False
            break
        if batch["input_ids"].size(0) == 0:  # the last, short global batch may leave a rank without rows
            continue
        batch = {k: v.to(dist.device) for k, v in batch.items()}
        _, metrics = compute_loss(objective, model, batch)
        sums[:3] += torch.tensor([metrics["loss_sum"], metrics["targets"], metrics["correct"]], dtype=torch.float64)
        if objective == "mlm":
            sums[6:] += torch.tensor(blank_counts(model, batch, special_tokens(tokenizer)["mask"]), dtype=torch.float64)
        if objective == "seq2seq":
            predictions = generate_targets(model, batch, tokenizer, repetition_penalty)
            references = decode_labels(batch["labels"], tokenizer)
            sums[3] += sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
            sums[4] += sum(word_f1(p, r) for p, r in zip(predictions, references, strict=True))
            sums[5] += len(predictions)
    model.train(was_training)
    sums = dist.sum(sums)
    loss_sum, targets, correct, exact, f1, sequences, blanks, blanks_right = sums.tolist()
    result = {"loss": loss_sum / max(targets, 1), "accuracy": correct / max(targets, 1), "targets": int(targets)}
    if objective == "mlm":
        result["blank_accuracy"] = blanks_right / max(blanks, 1)
    if objective == "clm":
        characters = corpus.num_characters("validation")
        if not complete:  # the pass stopped early: count the characters of the share of tokens it covered
            characters *= targets / count_clm_targets(corpus, tokenizer)
        result["nats_per_char"] = loss_sum / characters
        result["bits_per_char"] = result["nats_per_char"] / math.log(2)
    if objective == "seq2seq":
        result["exact_match"] = exact / max(sequences, 1)
        result["word_f1"] = f1 / max(sequences, 1)
    return result


def blank_counts(model: nn.Module, batch: dict, mask_id: int) -> tuple[float, float]:
    """(blanks, right): how many targets the input shows as [MASK], and how many of those the model's argmax
    gets. MLM's accuracy counts every chosen token, and a tenth of those stay visible in the input (the 10%
    left unchanged), where copying the input is right; at a blank only the context can tell."""
    labels = batch["labels"].masked_fill(batch["input_ids"] != mask_id, IGNORE)
    _, metrics = compute_loss("mlm", model, {**batch, "labels": labels})
    return metrics["targets"], metrics["correct"]


def count_clm_targets(corpus: Corpus, tokenizer: Tokenizer) -> int:
    """Targets one full causal-LM pass over the validation split has: every token and document separator."""
    return sum(len(e.ids) + 1 for e in tokenizer.encode_batch_fast(list(corpus.validation),
                                                                   add_special_tokens=False))


def generate_targets(model: nn.Module, batch: dict, tokenizer: Tokenizer, repetition_penalty: float = 1.0
                     ) -> list[str]:
    """Greedy generations for the sources of a seq2seq batch, as text."""
    max_new = batch["labels"].size(1)
    generated = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new,
                               repetition_penalty=repetition_penalty)
    return tokenizer.decode_batch(generated[:, 1:].tolist(), skip_special_tokens=True)


def decode_labels(labels: torch.Tensor, tokenizer: Tokenizer) -> list[str]:
    return tokenizer.decode_batch([[t for t in row if t >= 0] for row in labels.tolist()], skip_special_tokens=True)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def word_f1(prediction: str, reference: str) -> float:
    """F1 of the bags of lower-cased words (as SQuAD's token F1)."""
    predicted, expected = Counter(words(prediction)), Counter(words(reference))
    overlap = sum((predicted & expected).values())
    if overlap == 0:
        return float(not predicted and not expected)
    precision, recall = overlap / sum(predicted.values()), overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)
