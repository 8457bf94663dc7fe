"""The tasks' metrics, each ``metric(predictions, references) -> float`` over the rows of an evaluation, one
prediction per row. The baselines (``task_baselines.py``) and the models' evaluation score with these same
functions.

==========================  ============================  ==================================  ===============
metric                      a prediction                  a reference                         better
==========================  ============================  ==================================  ===============
``accuracy``                a label                       the row's label                     higher
``token_accuracy``          a list of tags                the row's tags (same length)        higher
``exact_match``             a string                      the answer or target                higher
``word_f1``                 a string                      the target                          higher
``nats_per_character``      the row's total nats, the     the row's text                      lower
                            negative log-likelihood of
                            every token of its text
==========================  ============================  ==================================  ===============

``token_accuracy`` counts tokens over all rows (a long sentence weighs more); ``exact_match`` compares strings
with surrounding whitespace stripped; ``word_f1`` is the mean over rows of SQuAD's bag-of-words F1 of the
lower-cased words (``word_f1`` here, the one the seq2seq evaluation reports too);
``nats_per_character`` divides the summed nats by the summed characters, so that it does not depend on the
tokenizer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import TrilogyError


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


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    _check_lengths(predictions, references)
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references)


def token_accuracy(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    _check_lengths(predictions, references)
    correct = total = 0
    for number, (predicted, expected) in enumerate(zip(predictions, references, strict=True)):
        if len(predicted) != len(expected):
            raise TrilogyError(f"row {number}: {len(predicted)} predicted tags for {len(expected)} tokens")
        correct += sum(p == e for p, e in zip(predicted, expected, strict=True))
        total += len(expected)
    return correct / total if total else 0.0


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    _check_lengths(predictions, references)
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)) / len(references)


def mean_word_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    _check_lengths(predictions, references)
    return math.fsum(word_f1(p, r) for p, r in zip(predictions, references, strict=True)) / len(references)


def nats_per_character(row_nats: Sequence[float], texts: Sequence[str]) -> float:
    _check_lengths(row_nats, texts)
    return math.fsum(row_nats) / sum(len(text) for text in texts)


METRICS: dict[str, Callable[[Sequence[Any], Sequence[Any]], float]] = {
    "accuracy": accuracy,
    "token_accuracy": token_accuracy,
    "exact_match": exact_match,
    "word_f1": mean_word_f1,
    "nats_per_character": nats_per_character,
}
HIGHER_IS_BETTER = {name: name != "nats_per_character" for name in METRICS}


def _check_lengths(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise TrilogyError(f"{len(predictions)} predictions for {len(references)} rows")
    if not references:
        raise TrilogyError("no rows to score")
