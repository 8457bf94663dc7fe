"""Options written once, as dataclass fields, and read by the command line too.

A field made with ``option(default, "one-line doc")`` carries its doc; ``add_options`` turns every field of the
dataclass into ``--field-name`` with the field's type, its doc and its default as help. The parser's defaults
are None, so a command can tell what was given on the command line (``given``) from what the dataclass fills in.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def option(default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """A dataclass field with a one-line ``doc`` for ``--help``."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def add_options(parser: argparse.ArgumentParser, cls: type) -> list[str]:
    """Add one argument per field of the dataclass ``cls``: booleans as switches, ``X | None`` as X. Returns the
    field names, in order."""
    hints = typing.get_type_hints(cls)
    names = []
    for field in dataclasses.fields(cls):
        kind = _value_type(hints[field.name])
        help_text = field.metadata.get("doc", "")
        flag = f"--{field.name.replace('_', '-')}"
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            if field.default not in (dataclasses.MISSING, None):
                help_text = f"{help_text} (default {field.default})"
            parser.add_argument(flag, type=kind, default=None, help=help_text)
        names.append(field.name)
    return names


def given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The options among ``names`` that the command line set."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _value_type(hint: Any) -> Any:
    """``int`` for ``int`` and for ``int | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (kind,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return kind
    return hint
