"""Causal language modelling (GPT): predict every next token; evaluated in nats and bits per character, against
a unigram model of the training tokens.

Legend: B batch, T length, V vocabulary.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..data import Corpus, special_tokens
from ..data.stream import pack
from .batches import Batches, pad_rows
from .noise import IGNORE
from .registry import Objective, register


class CausalLM(Objective):
    """Packed blocks; ``labels[:, t]`` is the token after ``input_ids[:, t]``."""

    name, arch, head = "clm", "decoder", "lm"
    default_for: tuple[str, ...] = ("text", "pairs")
    needs = ("pad", "eos")

    def epoch_items(self, batches: Batches) -> Iterator[Any]:
        tokens = itertools.chain([np.asarray([batches.special["eos"]])], batches.tokens)
        return pack(tokens, batches.seq_len + 1, batches.seq_len, batches.keep_last)  # blocks overlap by one

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        blocks = [torch.from_numpy(row) for row in rows]
        input_ids, attention_mask = pad_rows([block[:-1] for block in blocks], batches.special["pad"])
        labels, _ = pad_rows([block[1:] for block in blocks], IGNORE)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def eval_metrics(self, sums: dict[str, float], corpus: Corpus, tokenizer: Tokenizer, complete: bool
                     ) -> dict[str, float]:
        characters: float = corpus.num_characters("validation")
        if not complete:  # the pass stopped early: count the characters of the share of tokens it covered
            characters *= sums["targets"] / count_targets(corpus, tokenizer)
        nats = sums["loss_sum"] / characters
        return {"nats_per_char": nats, "bits_per_char": nats / math.log(2)}

    def baselines(self, corpus: Corpus, tokenizer: Tokenizer, seq_len: int, batch_size: int,
                  max_batches: int | None) -> dict[str, dict[str, float]]:
        nats = unigram_nats_per_char(corpus, tokenizer, special_tokens(tokenizer)["eos"])
        return {"unigram model": {"nats_per_char": nats, "bits_per_char": nats / math.log(2)}}


register(CausalLM())


def count_targets(corpus: Corpus, tokenizer: Tokenizer) -> int:
    """Targets one full causal-LM pass over the validation split has: every token and document separator."""
    return sum(len(e.ids) + 1 for e in tokenizer.encode_batch_fast(list(corpus.validation),
                                                                   add_special_tokens=False))


def token_counts(corpus: Corpus, tokenizer: Tokenizer) -> np.ndarray:
    """How often each id occurs in the training split's texts. (V,) int64."""
    counts = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    texts = corpus.texts("train")
    while chunk := list(itertools.islice(texts, 64)):
        for encoding in tokenizer.encode_batch_fast(chunk, add_special_tokens=False):
            np.add.at(counts, encoding.ids, 1)
    return counts


def unigram_nats_per_char(corpus: Corpus, tokenizer: Tokenizer, separator: int) -> float:
    """Validation loss of the add-one-smoothed unigram model of the training tokens, per character (the
    document separators are predicted too, as in causal-LM evaluation)."""
    counts = token_counts(corpus, tokenizer)
    counts[separator] += corpus.num_documents("train")
    log_p = np.log(counts + 1.0) - math.log(counts.sum() + len(counts))
    total = 0.0
    for encoding in tokenizer.encode_batch_fast(list(corpus.validation), add_special_tokens=False):
        total -= log_p[encoding.ids].sum() + log_p[separator]
    return total / corpus.num_characters("validation")
