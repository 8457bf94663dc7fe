"""One pre-training corpus for every family: real English prose and Python from the tasks' domains, with every
task's eval rows left out, so that pre-training never sees what a task is scored on.

- ``movie reviews``: Pang & Lee's v2.0 reviews, whole, one sentence a line (the ``lm`` eval reviews left out);
- ``movie-review sentences``: the polarity sentences, about 4 KB of them a document (``polarity``'s eval rows
  left out);
- ``OANC``: the tagged corpus' sentences as text, its tokens joined by spaces, about 4 KB a document (``pos``'s
  eval sentences left out);
- ``WordNet``: synsets as ``word, word: definition; "example"``, about 4 KB a document (``wordnet-span``'s eval
  synsets left out);
- ``Python stdlib``: functions with their first docstring line as a comment above the code, about 4 KB a
  document (the ``docstrings`` eval modules left out).

On top of that, a unit (a review's line, a sentence, a synset, a function) is dropped when it is the text of an
eval row of any task, or holds a line of eight words or more of one (``EvalTexts``): the same sentence can stand
in two sources, and the same boilerplate in two reviews. Each source's documents are shuffled with seed 0;
each source gets an equal share of ``max_bytes`` (a source smaller than its share gives all it has, and the
others split the rest), and the documents of the sources alternate in the list. Labels never enter: no
polarity, no tags, no plural or spelling pairs. Shakespeare (``shakespeare.py``) is left out: no task is in
its English.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import TrilogyError
from .tasks import TASKS, full_split, review_split, row_texts, wordnet_split

DEFAULT_MAX_BYTES = 4_000_000
DOCUMENT_CHARS = 4000
PROBE_WORDS = 8


def pretraining_corpus(max_bytes: int = DEFAULT_MAX_BYTES) -> list[str]:
    """The documents of the corpus, at most ``max_bytes`` of UTF-8 in all, the sources alternating."""
    sources = list(pretraining_sources(max_bytes).values())
    longest = max(len(documents) for documents in sources)
    return [documents[index] for index in range(longest) for documents in sources if index < len(documents)]


def pretraining_sources(max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, list[str]]:
    """The documents of each source in the corpus, each source within its share of ``max_bytes``."""
    if max_bytes < 0:
        raise TrilogyError(f"max_bytes must be at least 0, got {max_bytes}")
    sources = _sources()
    shares, left = {}, max_bytes
    for place, name in enumerate(sorted(sources, key=lambda name: sources[name].size)):
        shares[name] = min(sources[name].size, left // (len(sources) - place))
        left -= shares[name]
    return {name: _within(source, shares[name]) for name, source in sources.items()}


@dataclass(frozen=True)
class Source:
    """The documents of one source, before the eval texts are taken out: each a list of units (a review's
    lines, sentences, synsets' lines, functions) to join with ``separator``, shuffled with seed 0."""

    separator: str
    documents: list[list[str]]
    size: int  # bytes of the documents joined


@functools.cache
def _sources() -> dict[str, Source]:
    reviews = [review.splitlines() for review in review_split()[0]]
    polarity = [row["text"] for row in full_split("polarity")[0]]
    oanc = [" ".join(row["tokens"]) for row in full_split("pos")[0]]
    leaks = _eval_texts()
    synsets = [synset.line() for synset in wordnet_split()[0]
               if not any(map(leaks.equal, (synset.definition, *synset.examples)))]
    code = [f"# {row['target']}\n{row['source']}" for row in full_split("docstrings")[0]]
    units = {"movie reviews": ("\n", reviews), "movie-review sentences": ("\n", _grouped(polarity)),
             "OANC": ("\n", _grouped(oanc)), "WordNet": ("\n", _grouped(synsets)),
             "Python stdlib": ("\n\n", _grouped(code))}
    sources = {}
    for name, (separator, documents) in units.items():
        random.Random(0).shuffle(documents)
        size = sum(_bytes(unit) + len(separator) for document in documents for unit in document)
        sources[name] = Source(separator, documents, size)
    return sources


@functools.cache
def _eval_texts() -> EvalTexts:
    return EvalTexts(text for name in TASKS for row in full_split(name)[1] for text in row_texts(row))


class EvalTexts:
    """The eval rows' texts, to keep out of pre-training. A unit of the corpus (a sentence, a synset's line, a
    function) is out when it is one of them, or when a line of one of them with ``PROBE_WORDS`` words or more
    stands in it. Such a line is found through its second to seventh words, which stand whole in the unit."""

    def __init__(self, texts: Iterable[str]):
        self.whole: set[str] = set()
        self.probes: dict[tuple[str, ...], list[str]] = {}  # words 1..6 of a line -> the lines
        for text in texts:
            self.whole.add(text.strip())
            for line in text.splitlines():
                words = line.split()
                if len(words) >= PROBE_WORDS:
                    self.probes.setdefault(tuple(words[1:PROBE_WORDS - 1]), []).append(line.strip())
        self.first_words = {key[0] for key in self.probes}

    def equal(self, text: str) -> bool:
        return text.strip() in self.whole

    def occur_in(self, unit: str) -> bool:
        if self.equal(unit):
            return True
        words = unit.split()
        width = PROBE_WORDS - 2
        for start in range(len(words) - width + 1):
            if words[start] in self.first_words:
                lines = self.probes.get(tuple(words[start:start + width]), ())
                if any(line in unit for line in lines):
                    return True
        return False


def _grouped(units: list[str]) -> list[list[str]]:
    """Consecutive units in groups of about ``DOCUMENT_CHARS`` (a longer unit alone)."""
    groups: list[list[str]] = []
    size = 0
    for unit in units:
        if not groups or size + len(unit) > DOCUMENT_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(unit)
        size += len(unit) + 1
    return groups


def _within(source: Source, budget: int) -> list[str]:
    """The source's documents, in order, without the units that hold eval texts, up to the first that would
    overflow ``budget`` bytes."""
    leaks = _eval_texts()
    chosen, used = [], 0
    for units in source.documents:
        kept = [unit for unit in units if not leaks.occur_in(unit)]
        if not kept:
            continue
        document = source.separator.join(kept) + source.separator
        used += _bytes(document)
        if used > budget:
            break
        chosen.append(document)
    return chosen


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


if __name__ == "__main__":
    sources = pretraining_sources()
    for source, documents in sources.items():
        print(f"{source:24s} {len(documents):6,d} documents {sum(map(_bytes, documents)):11,d} bytes")
    print(f"{'in all':24s} {sum(map(len, sources.values())):6,d} documents "
          f"{sum(_bytes(document) for documents in sources.values() for document in documents):11,d} bytes")
