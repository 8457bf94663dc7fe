"""The ``trilogy`` command. Subcommands live one per module in ``trilogy.commands``; each module defines
``register(subparsers)`` which adds its parser and sets ``func``. The CLI only parses and dispatches: errors a
user can cause become one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__, commands


class UserError(Exception):
    """An error caused by the command line or its inputs: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError) as error:
        print(f"trilogy {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trilogy {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `trilogy presets | head -2`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
