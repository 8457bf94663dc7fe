"""The ``trilogy`` command. Subcommands live one per module in ``trilogy.commands``; each module defines
``register(subparsers)`` which adds its parser and sets ``func``. The CLI only parses and dispatches: the errors
a user can cause (``TrilogyError``) become one line on stderr and exit status 2; any other exception is a bug and
surfaces with its traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__, commands
from .errors import TrilogyError


class UserError(TrilogyError):
    """An error caused by the command line itself (options that do not go together, a missing --out)."""


class _CommandLine(argparse.ArgumentParser):
    """argparse, with a bad command line reported like any other user error (one line, exit status 2) rather
    than as the usage text followed by the message."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandLine(
        prog="trilogy",
        description="Build, train, load, run, look inside and compare encoder-only, decoder-only and "
                    "encoder-decoder transformers.",
    )
    parser.add_argument("--version", action="version", version=f"trilogy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except TrilogyError as error:
        print(f"trilogy {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trilogy {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `trilogy presets | head -2`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
