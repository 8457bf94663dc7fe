"""The encoder-decoder objectives on text: T5's span corruption, and BART-style denoising (the same noised
inputs, the whole block as the target).

Legend: L one block's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from ..data.stream import pack
from .batches import Batches
from .noise import corrupt_spans, random_spans_noise_mask, replace_spans, span_lengths
from .registry import EncoderDecoderObjective, register


class SpanCorruption(EncoderDecoderObjective):
    """Packed blocks, T5 span corruption (density 0.15, mean span 3): the target holds the dropped spans."""

    name = "span"
    default_for = ("text",)
    needs_sentinels = True

    def epoch_items(self, batches: Batches) -> Iterator[Any]:
        block_len = span_lengths(batches.seq_len)[0]  # the blocks whose corrupted inputs fill seq_len
        return pack(batches.tokens, block_len, block_len, batches.keep_last)

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        special = batches.special
        pairs = [corrupt_spans(torch.from_numpy(row), special["sentinels"], special["eos"], generator) for row in rows]
        return batches.encoder_decoder([s for s, _ in pairs], [t for _, t in pairs])


class Denoise(EncoderDecoderObjective):
    """Packed blocks, inputs noised as ``span``; the target is the whole block (BART)."""

    name = "denoise"
    needs_sentinels = True

    def epoch_items(self, batches: Batches) -> Iterator[Any]:
        block_len = batches.seq_len - 1  # and </s>
        return pack(batches.tokens, block_len, block_len, batches.keep_last)

    def collate(self, batches: Batches, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        blocks = [torch.from_numpy(row) for row in rows]  # (L,) each
        eos, sentinels = torch.tensor([batches.special["eos"]]), batches.special["sentinels"]
        noised = [replace_spans(block, random_spans_noise_mask(len(block), generator), sentinels)
                  for block in blocks]
        return batches.encoder_decoder([torch.cat([inputs, eos]) for inputs in noised],
                                       [torch.cat([block, eos]) for block in blocks])


register(SpanCorruption())
register(Denoise())
