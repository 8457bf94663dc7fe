"""Simple baselines for the tasks: each learns what it needs from the train rows and predicts every eval row, in
the form the task's metric takes (``task_metrics.py``), so a model's score and its baseline's read the same.

=======================  ================  ========================================================================
baseline                 kind              prediction
=======================  ================  ========================================================================
``majority``             classification    the most frequent train label (ties: the first in sorted order)
``most-frequent-tag``    tagging           each token's most frequent train tag; unseen tokens the most frequent tag
``rarest-context-word``  span              the context's word seen least often in the train contexts (ties: the
                                           longer, then the first)
``copy``                 seq2seq           the source itself
``add-s``                seq2seq           the source and "s"
``function-name``        seq2seq           a function's name as words: ``def readFile_now(`` -> "Read file now"
``unigram``              lm                each row's nats under the train characters' unigram, add-one smoothed
                                           over the characters seen and one for any other
=======================  ================  ========================================================================
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .task_files import Row

FUNCTION_NAME = re.compile(r"def\s+(\w+)")

WORD = re.compile(r"\w+(?:[-'.]\w+)*")  # a word of a span context: "well-known", "don't", "U.S"



def function_name(source: str) -> str:
    """The name the first ``def`` of ``source`` defines ("" when there is none)."""
    match = FUNCTION_NAME.search(source)
    return match.group(1) if match else ""


def name_as_docstring(source: str) -> str:
    """The copy-the-name baseline's summary of a function: ``def readFile_now(`` -> "Read file now"."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", function_name(source))
    text = " ".join(part for part in name.split("_") if part).lower()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Baseline:
    kind: str
    predict: Callable[[list[Row], list[Row]], list[Any]]  # (train rows, eval rows) -> a prediction per eval row


def majority_label(train: list[Row], rows: list[Row]) -> list[str]:
    counts = Counter(row["label"] for row in train)
    label = min(counts, key=lambda label: (-counts[label], label))
    return [label for _ in rows]


def most_frequent_tag(train: list[Row], rows: list[Row]) -> list[list[str]]:
    by_token: dict[str, Counter[str]] = {}
    overall: Counter[str] = Counter()
    for row in train:
        for token, tag in zip(row["tokens"], row["tags"], strict=True):
            by_token.setdefault(token, Counter())[tag] += 1
            overall[tag] += 1
    best = {token: _most_common(counts) for token, counts in by_token.items()}
    fallback = _most_common(overall)
    return [[best.get(token, fallback) for token in row["tokens"]] for row in rows]


def rarest_context_word(train: list[Row], rows: list[Row]) -> list[str]:
    counts = Counter(word.lower() for row in train for word in WORD.findall(row["context"]))
    predictions = []
    for row in rows:
        words = WORD.findall(row["context"])
        predictions.append(min(words, key=lambda word: (counts[word.lower()], -len(word))) if words else "")
    return predictions


def copy_source(train: list[Row], rows: list[Row]) -> list[str]:
    return [row["source"] for row in rows]


def add_s(train: list[Row], rows: list[Row]) -> list[str]:
    return [row["source"] + "s" for row in rows]


def function_name_words(train: list[Row], rows: list[Row]) -> list[str]:
    return [name_as_docstring(row["source"]) for row in rows]


def unigram_nats(train: list[Row], rows: list[Row]) -> list[float]:
    counts = Counter(character for row in train for character in row["text"])
    total = sum(counts.values()) + len(counts) + 1  # add one to each seen character and to "any other"
    return [-math.fsum(math.log((counts[character] + 1) / total) for character in row["text"]) for row in rows]


def _most_common(counts: Counter[str]) -> str:
    return min(counts, key=lambda item: (-counts[item], item))


BASELINES = {
    "majority": Baseline("classification", majority_label),
    "most-frequent-tag": Baseline("tagging", most_frequent_tag),
    "rarest-context-word": Baseline("span", rarest_context_word),
    "copy": Baseline("seq2seq", copy_source),
    "add-s": Baseline("seq2seq", add_s),
    "function-name": Baseline("seq2seq", function_name_words),
    "unigram": Baseline("lm", unigram_nats),
}
DEFAULT_BASELINE = {"classification": "majority", "tagging": "most-frequent-tag", "span": "rarest-context-word",
                    "seq2seq": "copy", "lm": "unigram"}
