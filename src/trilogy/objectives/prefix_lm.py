"""The prefix LM objective of the T5 paper (Raffel et al. 2020, §3.2.1): the causal LM's blocks, each row split
at a random point into a prefix, which the model reads bidirectionally, and a continuation, which it predicts.

Legend: B batch, T length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from ..data import Corpus
from .batches import Batches
from .causal import CausalLM
from .noise import IGNORE
from .registry import register

if TYPE_CHECKING:
    from ..models import ModelOutput


class PrefixLM(CausalLM):
    """The causal LM's packed blocks; each row's ``prefix_length`` P is drawn uniformly from 1 to its L real
    tokens (from the batch's seed), and only the continuation is predicted: ``labels[:, t]`` is -100 for
    t < P - 1, whose targets lie in the prefix the model sees both ways."""

    name, arch, head = "prefix-lm", "decoder", "lm"
    default_for: tuple[str, ...] = ()
    prefix_lm = True

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        batch = super().collate(batches, rows, generator)
        labels = batch["labels"]  # (B, T)
        lengths = batch["attention_mask"].sum(-1)  # (B,) real tokens
        prefix_length = 1 + (torch.rand(len(lengths), generator=generator) * lengths).long()  # (B,) in [1, L]
        in_prefix = torch.arange(labels.size(1))[None] < (prefix_length - 1)[:, None]  # (B, T) targets in prefix
        return {**batch, "labels": labels.masked_fill(in_prefix, IGNORE), "prefix_length": prefix_length}

    def run(self, model: nn.Module, batch: dict[str, Tensor]) -> ModelOutput:
        return model.run(batch["input_ids"], batch["attention_mask"], labels=batch["labels"],
                         prefix_length=batch["prefix_length"])

    def eval_metrics(self, sums: dict[str, float], corpus: Corpus, tokenizer: Tokenizer, complete: bool
                     ) -> dict[str, float]:
        """The causal LM's, over the characters of the continuations: the validation split's characters times
        the share of its tokens that were targets (as the causal LM counts a pass that stopped early)."""
        return super().eval_metrics(sums, corpus, tokenizer, complete=False)


register(PrefixLM())
