"""Task rows: one JSON object per row, in one of five formats, named after the kind of task they serve.

==================  ================================================  ==========================================
kind                keys (types)                                      rule
==================  ================================================  ==========================================
``classification``  ``text`` (str), ``label`` (str, or int: read as   one label per text
                    its decimal string)
``tagging``         ``tokens`` (list of str), ``tags`` (list of str)  one tag per token, at least one token
``span``            ``context``, ``question``, ``answer`` (str),      ``context[answer_start:][:len(answer)]``
                    ``answer_start`` (int, optional in a file)        is the answer; found when not given
``seq2seq``         ``source``, ``target`` (str)
``lm``              ``text`` (str)                                    held-out text to score, nothing to predict
==================  ================================================  ==========================================

Every string must hold more than whitespace. ``read_task_file`` reads a user's JSONL file: the first row's keys
name the format, every row must have exactly those keys, and a bad row stops the reading with a TrilogyError
naming the file and the line. Rows come back as plain dicts, span rows always with ``answer_start``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TrilogyError
from .corpus import jsonl_records

Row = dict[str, Any]

FORMATS: dict[str, tuple[str, ...]] = {
    "classification": ("text", "label"),
    "tagging": ("tokens", "tags"),
    "span": ("context", "question", "answer", "answer_start"),
    "seq2seq": ("source", "target"),
    "lm": ("text",),
}
OPTIONAL_KEYS = {"answer_start"}


def row_kind(keys: set[str]) -> str | None:
    """The format whose keys are ``keys`` (optional keys may be missing), or None."""
    for kind, names in FORMATS.items():
        if set(names) - OPTIONAL_KEYS <= keys <= set(names):
            return kind
    return None


def check_row(kind: str, row: Row) -> Row:
    """``row`` checked against the format ``kind`` and completed (``answer_start``, a label as str); raises a
    TrilogyError saying what is wrong (without a location: ``read_task_file`` adds it)."""
    keys = set(row)
    if row_kind(keys) != kind:
        raise TrilogyError(f"keys {', '.join(sorted(keys)) or '(none)'} are not the {kind} format's "
                           f"({', '.join(FORMATS[kind])})")
    if kind == "tagging":
        return _tagging_row(row)
    if kind == "classification":
        label = row["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TrilogyError(f"'label' must be a string or an integer, got {_type(label)}")
        return {"text": _text(row, "text"), "label": str(label)}
    if kind == "span":
        return _span_row(row)
    return {name: _text(row, name) for name in FORMATS[kind]}


def read_task_file(path: str | Path) -> tuple[str, list[Row]]:
    """The kind of task (its format) and the rows of a JSONL file; blank lines are skipped."""
    path = Path(path)
    kind: str | None = None
    rows: list[Row] = []
    for number, row in jsonl_records(path):
        try:
            if kind is None:
                kind = row_kind(set(row))
                if kind is None:
                    raise TrilogyError(f"keys {', '.join(sorted(row)) or '(none)'} match no task format "
                                       "(text+label, tokens+tags, context+question+answer, source+target, text)")
            rows.append(check_row(kind, row))
        except TrilogyError as error:
            raise TrilogyError(f"{path}:{number}: {error}") from None
    if kind is None:
        raise TrilogyError(f"{path}: holds no rows")
    return kind, rows


def _text(row: Row, name: str) -> str:
    value = row[name]
    if not isinstance(value, str):
        raise TrilogyError(f"{name!r} must be a string, got {_type(value)}")
    if not value.strip():
        raise TrilogyError(f"{name!r} is empty")
    return value


def _tagging_row(row: Row) -> Row:
    lists = {}
    for name in ("tokens", "tags"):
        value = row[name]
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise TrilogyError(f"{name!r} must be a list of non-empty strings")
        lists[name] = value
    if len(lists["tokens"]) != len(lists["tags"]):
        raise TrilogyError(f"{len(lists['tokens'])} tokens but {len(lists['tags'])} tags")
    if not lists["tokens"]:
        raise TrilogyError("'tokens' is empty")
    return lists


def _span_row(row: Row) -> Row:
    context, question, answer = _text(row, "context"), _text(row, "question"), _text(row, "answer")
    start = row.get("answer_start")
    if start is None:
        start = context.find(answer)
        if start < 0:
            raise TrilogyError(f"the answer {answer!r} is not a span of the context")
    elif isinstance(start, bool) or not isinstance(start, int):
        raise TrilogyError(f"'answer_start' must be an integer, got {_type(start)}")
    elif context[start:start + len(answer)] != answer or start < 0:
        raise TrilogyError(f"the context at answer_start {start} is not the answer {answer!r}")
    return {"context": context, "question": question, "answer": answer, "answer_start": start}


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
