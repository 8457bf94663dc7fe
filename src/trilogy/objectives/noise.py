"""The noise of the denoising objectives: BERT's token masking and T5's span corruption.

Legend: B batch, T length, L one sequence's length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import TrilogyError

IGNORE = -100  # the label of a position nothing is predicted at
MASK_PROBABILITY = 0.15
NOISE_DENSITY = 0.15
MEAN_SPAN_LENGTH = 3.0


# --- masked LM -------------------------------------------------------------------------------------------


def mask_tokens(input_ids: Tensor, maskable: Tensor, mask_id: int, replacements: Tensor,
                generator: torch.Generator, probability: float = MASK_PROBABILITY) -> tuple[Tensor, Tensor]:
    """BERT's masking: each maskable token is chosen with ``probability``; a chosen token becomes ``mask_id``
    (80%), a random id from ``replacements`` (10%) or stays (10%).

    Args:
        input_ids: (B, T); maskable: (B, T) bool, False for special and padding tokens.
    Returns:
        (inputs (B, T), labels (B, T): the original id where chosen, -100 elsewhere).
    """
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    action = torch.rand(input_ids.shape, generator=generator)
    random_ids = replacements[torch.randint(len(replacements), input_ids.shape, generator=generator)]
    inputs = torch.where(chosen & (action < 0.8), mask_id, input_ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, torch.where(chosen, input_ids, IGNORE)


# --- span corruption -------------------------------------------------------------------------------------


def span_counts(length: int, density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN_LENGTH
                ) -> tuple[int, int]:
    """(noise tokens, noise spans) for a sequence of ``length`` tokens, as T5 computes them."""
    if length < 2:
        return 0, 0
    noise = min(max(round(length * density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


def span_lengths(inputs_len: int, density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN_LENGTH
                 ) -> tuple[int, int]:
    """(raw tokens, target length) such that span-corrupting the raw tokens gives exactly ``inputs_len``
    input tokens or fewer, ``</s>`` included (T5's ``compute_input_and_target_lengths``)."""

    def lengths(raw: int) -> tuple[int, int]:
        noise, spans = span_counts(raw, density, mean_span)
        return raw - noise + spans + 1, noise + spans + 1

    raw = 1
    while lengths(raw + 1)[0] <= inputs_len:
        raw += 1
    return raw, lengths(raw)[1]


def random_spans_noise_mask(length: int, generator: torch.Generator, density: float = NOISE_DENSITY,
                            mean_span: float = MEAN_SPAN_LENGTH) -> Tensor:
    """T5's noise mask: ``span_counts`` noise tokens in that many spans of random (>= 1) lengths, alternating
    with non-noise spans, starting with non-noise.

    Returns:
        (length,) bool, True = noise.
    """
    noise, spans = span_counts(length, density, mean_span)
    if spans == 0:
        return torch.zeros(length, dtype=torch.bool)
    noise_lengths = _random_segmentation(noise, spans, generator)  # (spans,)
    kept_lengths = _random_segmentation(length - noise, spans, generator)  # (spans,)
    run_ends = torch.stack([kept_lengths, noise_lengths], dim=1).flatten().cumsum(0)  # (2 * spans,)
    run_starts = torch.zeros(length, dtype=torch.long)
    run_starts[run_ends[:-1]] = 1
    return run_starts.cumsum(0) % 2 == 1  # odd runs are noise


def _random_segmentation(items: int, segments: int, generator: torch.Generator) -> Tensor:
    """Lengths (segments,) >= 1 summing to ``items``, uniformly over such compositions."""
    cuts = torch.randperm(items - 1, generator=generator)[:segments - 1].sort().values + 1
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([items])])
    return bounds.diff()


def replace_spans(tokens: Tensor, mask: Tensor, sentinels: Sequence[int]) -> Tensor:
    """``tokens`` with each run of masked positions replaced by one sentinel, numbered in order.

    Args:
        tokens: (L,); mask: (L,) bool.
    """
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
    if int(starts.sum()) > len(sentinels):
        raise TrilogyError(f"{int(starts.sum())} spans need more than the tokenizer's {len(sentinels)} sentinels")
    numbered = torch.tensor(list(sentinels[: int(starts.sum())]), dtype=tokens.dtype)
    replaced = tokens.clone()
    replaced[starts] = numbered
    return replaced[~mask | starts]


def corrupt_spans(tokens: Tensor, sentinels: Sequence[int], eos: int, generator: torch.Generator
                  ) -> tuple[Tensor, Tensor]:
    """T5 span corruption of one sequence: inputs keep the non-noise tokens with a sentinel per noise span;
    targets hold each sentinel followed by the span it replaced; both end with ``eos``."""
    noise = random_spans_noise_mask(len(tokens), generator)
    end = torch.tensor([eos], dtype=tokens.dtype)
    inputs = torch.cat([replace_spans(tokens, noise, sentinels), end])
    targets = torch.cat([replace_spans(tokens, ~noise, sentinels), end])
    return inputs, targets
