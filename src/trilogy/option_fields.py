"""Options written once, as dataclass fields, and read by the command line too.

A field made with ``option(default, "one-line doc")`` carries its doc; ``add_options`` turns every field of the
dataclass into ``--field-name`` with the field's type, its doc and its default as help, and ``parse`` turns what
the command line gave back into the dataclass. The parser's defaults are None, so that what the command line
did not give is left to the dataclass's defaults; a field made with ``options_of(cls)`` holds, by name, only the
fields of ``cls`` that the command line gave (``given``), for a command that compares them with a saved run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from .errors import TrilogyError

T = TypeVar("T")


class UserError(TrilogyError):
    """An error caused by the command line itself (options that do not go together, a missing --out)."""


def option(default: Any = dataclasses.MISSING, doc: str = "", *, positional: bool = False,
           aliases: Sequence[str] = (), metavar: str | None = None, choices: Sequence[str] | None = None,
           exclusive: str | None = None, required: bool = False) -> Any:
    """A dataclass field with a one-line ``doc`` for ``--help``. A field without a default is required.

    Args:
        positional: an argument without a flag (``trilogy size MODEL``) rather than ``--field-name``.
        aliases: more flags for the same option, such as ``("--dtype",)``.
        metavar: the value's name in the help, such as ``"N"``.
        choices: the values the command line accepts.
        exclusive: options with the same ``exclusive`` name may not be given together.
        required: for an ``exclusive`` option: the command line must give one of its group.
    """
    metadata = dict(doc=doc, positional=positional, aliases=tuple(aliases), metavar=metavar, choices=choices,
                    exclusive=exclusive, required=required)
    return dataclasses.field(default=default, metadata=metadata)


def options_of(cls: type | str, **more: dict[str, Any]) -> Any:
    """A field holding the options of the dataclass ``cls`` that the command line gave, by name. Each field of
    ``cls`` is an option; ``more`` gives a field what ``option`` would (``doc=...``, ``aliases=...``), for a
    dataclass whose fields were not made with ``option``. ``cls`` may be named ``"module:Name"``, for a module
    that is slow to import: it is imported when the options are added or parsed."""
    return dataclasses.field(default_factory=dict, metadata={"options": cls, "more": more})


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per field of the dataclass ``cls``, in order: booleans as switches, ``X | None`` as X,
    ``list[X]`` as one or more X (a repeated flag adds to them); an ``options_of`` field as the options of its dataclass, none of them required
    (the command decides what it needs of them)."""
    _add_fields(parser, cls, {}, in_group=False)


def _add_fields(parser: argparse.ArgumentParser, cls: type, more: dict[str, dict[str, Any]], in_group: bool) -> None:
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if "options" in field.metadata:
            _add_fields(parser, _dataclass(field.metadata["options"]), field.metadata["more"], in_group=True)
            continue
        meta = {"aliases": (), "exclusive": None, **field.metadata, **more.get(field.name, {})}
        kind = _value_type(hints[field.name])
        help_text = meta.get("doc", "")
        if kind is not bool and field.default not in (dataclasses.MISSING, None):
            help_text = f"{help_text} (default {field.default})"
        settings: dict[str, Any] = dict(help=help_text.replace("%", "%%"), default=None)
        if kind is bool:
            settings["action"] = "store_true"
        else:
            settings.update(type=kind, metavar=meta.get("metavar"), choices=meta.get("choices"))
            if typing.get_origin(hints[field.name]) is list:
                settings["nargs"] = "+"
                if not meta.get("positional"):  # a flag given again adds its values: --task a.jsonl --task b.jsonl
                    settings["action"] = "extend"
        if meta.get("positional"):
            parser.add_argument(field.name, **settings)
            continue
        target: Any = parser
        if meta["exclusive"] is not None:
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
            target.required = target.required or meta.get("required", False)
        elif not in_group:
            settings["required"] = (field.default is dataclasses.MISSING
                                    and field.default_factory is dataclasses.MISSING)
        target.add_argument(f"--{field.name.replace('_', '-')}", *meta["aliases"], **settings)


def parse(args: argparse.Namespace, cls: type[T]) -> T:
    """The dataclass ``cls`` of what the command line gave (``args``, from a parser ``add_options`` made); the
    fields it did not give keep their defaults."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if "options" in field.metadata:
            group = _dataclass(field.metadata["options"])
            values[field.name] = given(args, [member.name for member in dataclasses.fields(group)])
        elif getattr(args, field.name) is not None:
            values[field.name] = getattr(args, field.name)
    return cls(**values)


def given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The options among ``names`` that the command line set."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _dataclass(cls: type | str) -> type:
    """``cls``, or the class it names as ``"module:Name"``."""
    if isinstance(cls, str):
        module, _, name = cls.partition(":")
        return getattr(importlib.import_module(module), name)
    return cls


def _value_type(hint: Any) -> Any:
    """The type of one value: ``int`` for ``int`` and for ``int | None``, ``str`` for ``list[str]``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is list:
        (hint,) = typing.get_args(hint)
    return hint
