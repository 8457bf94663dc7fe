"""Masked language modelling (BERT): 15% of the tokens of ``[CLS] ... [SEP]`` blocks are chosen and mostly
masked; evaluated by accuracy over every chosen token and at the ``[MASK]`` blanks alone, against always
guessing the most frequent training token.

Legend: B batch, T length, V vocabulary.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from ..data import Corpus, special_ids, special_tokens
from ..data.stream import pack
from .batch_loss import compute_loss
from .batches import Batches, pad_rows
from .causal import token_counts
from .noise import IGNORE, mask_tokens
from .registry import Objective, register


class MaskedLM(Objective):
    """Packed ``[CLS] ... [SEP]`` blocks, 15% of the tokens chosen as BERT does."""

    name, arch, head = "mlm", "encoder", "mlm"
    default_for = ("text",)
    separator = "sep"
    needs = ("pad", "cls", "sep", "mask")
    eval_sums = ("blanks", "blanks_right")

    def epoch_items(self, batches: Batches) -> Iterator[Any]:
        block_len = batches.seq_len - 2  # room for [CLS] and [SEP]
        return pack(batches.tokens, block_len, block_len, batches.keep_last)

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        special, tokenizer = batches.special, batches.tokenizer
        cls, sep = torch.tensor([special["cls"]]), torch.tensor([special["sep"]])
        input_ids, attention_mask = pad_rows([torch.cat([cls, torch.from_numpy(r), sep]) for r in rows],
                                             special["pad"])
        specials = torch.tensor(sorted(special_ids(tokenizer)))
        maskable = ~torch.isin(input_ids, specials) & attention_mask.bool()
        vocab = torch.arange(tokenizer.get_vocab_size())
        inputs, labels = mask_tokens(input_ids, maskable, special["mask"], vocab[~torch.isin(vocab, specials)],
                                     generator)
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}

    def eval_batch(self, model: nn.Module, batch: dict[str, Tensor], tokenizer: Tokenizer,
                   repetition_penalty: float) -> list[float]:
        return list(blank_counts(model, batch, special_tokens(tokenizer)["mask"]))

    def eval_metrics(self, sums: dict[str, float], corpus: Corpus, tokenizer: Tokenizer, complete: bool
                     ) -> dict[str, float]:
        return {"blank_accuracy": sums["blanks_right"] / max(sums["blanks"], 1)}

    def baselines(self, corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                  max_batches: int | None) -> dict[str, dict[str, float]]:
        return {"most frequent token": most_frequent_accuracy(corpus, tokenizer, seq_len, batch_size, max_batches)}


register(MaskedLM())


def blank_counts(model: nn.Module, batch: dict, mask_id: int) -> tuple[float, float]:
    """(blanks, right): how many targets the input shows as [MASK], and how many of those the model's argmax
    gets. MLM's accuracy counts every chosen token, and a tenth of those stay visible in the input (the 10%
    left unchanged), where copying the input is right; at a blank only the context can tell."""
    labels = batch["labels"].masked_fill(batch["input_ids"] != mask_id, IGNORE)
    _, metrics = compute_loss("mlm", model, {**batch, "labels": labels})
    return metrics["targets"], metrics["correct"]


def most_frequent_accuracy(corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                           max_batches: int | None) -> dict:
    """Masked-LM accuracy of always guessing the most frequent non-special training token, on the same
    validation batches (same masks) as evaluation: over every target (``accuracy``) and over the targets the
    input shows as [MASK] (``blank_accuracy``)."""
    counts = token_counts(corpus, tokenizer)
    counts[sorted(special_ids(tokenizer))] = -1
    batches = Batches("mlm", corpus.validation, tokenizer, seq_len, batch_size, seed=0, epochs=1, shuffle=False)
    return guess_accuracies(int(counts.argmax()), itertools.islice(batches, max_batches),
                            special_tokens(tokenizer)["mask"])


def guess_accuracies(guess: int, batches: Iterable[dict[str, Tensor]], mask_id: int) -> dict:
    """Accuracy of guessing ``guess`` for every MLM target of ``batches``, and for those shown as [MASK]."""
    hits = total = blank_hits = blanks = 0
    for batch in batches:
        chosen = batch["labels"] != IGNORE
        blank = chosen & (batch["input_ids"] == mask_id)
        hits += int((batch["labels"][chosen] == guess).sum())
        total += int(chosen.sum())
        blank_hits += int((batch["labels"][blank] == guess).sum())
        blanks += int(blank.sum())
    return {"accuracy": hits / max(total, 1), "blank_accuracy": blank_hits / max(blanks, 1)}
