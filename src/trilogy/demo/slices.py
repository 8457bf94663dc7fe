"""The slice of each corpus the tokenizers are trained on, and the unigram baselines counted on: the first
training documents up to a number of characters (enough for a 2,048-token vocabulary, and quick). T5's
tokenizer reads every training pair: trained on a tenth of them, it split identifiers into pieces that cost the
docstrings their margin over the baseline (the same budget and seed)."""

from __future__ import annotations

from collections.abc import Iterator

TOKENIZER_CHARS = {"text": 600_000, "pairs": 10_000_000}  # by corpus kind


def capped_texts(corpus, max_chars: int) -> Iterator[str]:
    """Training texts of ``corpus`` (sources and targets for pairs) until ``max_chars`` characters."""
    total = 0
    for text in corpus.texts("train"):
        yield text
        total += len(text)
        if total >= max_chars:
            return
