"""The ``trilogy`` command: a name for each function in ``trilogy.commands``. Each such function takes one
dataclass of options and returns the exit status; its docstring is the command's help and the dataclass's fields
(``trilogy.option_fields``) are its options. The CLI only parses and dispatches: the errors a user can cause
(``TrilogyError``) become one line on stderr and exit status 2; any other exception is a bug and surfaces with
its traceback."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import typing
from collections.abc import Callable
from typing import Any

from . import __version__, option_fields
from .commands.attention import attention
from .commands.compare import compare
from .commands.demo import demo
from .commands.eval import evaluate
from .commands.generate import generate
from .commands.info import info
from .commands.masks import masks
from .commands.presets import presets
from .commands.recommend import recommend
from .commands.size import size
from .commands.tour import tour
from .commands.train import train
from .errors import TrilogyError
from .option_fields import UserError

COMMANDS: dict[str, Callable[[Any], int]] = {
    "attention": attention,
    "compare": compare,
    "demo": demo,
    "eval": evaluate,
    "generate": generate,
    "info": info,
    "masks": masks,
    "presets": presets,
    "recommend": recommend,
    "size": size,
    "tour": tour,
    "train": train,
}


class _CommandLine(argparse.ArgumentParser):
    """argparse, with a bad command line reported like any other user error (one line, exit status 2) rather
    than as the usage text followed by the message."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: error: {message}")


class _Command(_CommandLine):
    """The parser of one command. It adds the options of the command's function when it is first used, so that
    a command (or ``trilogy --help``) imports no other command's options: the demo's import the trainer."""

    def __init__(self, *, function: Callable[[Any], int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function
        self.has_options = False

    def add_function_options(self) -> None:
        if not self.has_options:
            option_fields.add_options(self, options_type(self.function))
            self.set_defaults(function=self.function)
            self.has_options = True

    def parse_known_args(self, args=None, namespace=None):
        self.add_function_options()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.add_function_options()
        return super().format_usage()

    def format_help(self) -> str:
        self.add_function_options()
        return super().format_help()


class _Paragraphs(argparse.HelpFormatter):
    """Help whose description keeps the docstring's paragraphs, each filled to the terminal's width."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(fill(paragraph, width, indent) for paragraph in text.split("\n\n"))


def options_type(function: Callable[[Any], int]) -> type:
    """The dataclass of options a command's function takes."""
    (kind,) = [hint for name, hint in typing.get_type_hints(function).items() if name != "return"]
    return kind


def build_parser() -> argparse.ArgumentParser:
    parser = _CommandLine(
        prog="trilogy",
        description="Build, train, load, run, look inside and compare encoder-only, decoder-only and "
                    "encoder-decoder transformers.",
    )
    parser.add_argument("--version", action="version", version=f"trilogy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Command)
    for name, function in COMMANDS.items():
        doc = inspect.getdoc(function) or ""
        subparsers.add_parser(name, help=doc.partition("\n")[0], description=doc, formatter_class=_Paragraphs,
                              function=function)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.function(option_fields.parse(args, options_type(args.function)))
    except TrilogyError as error:
        print(f"trilogy {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trilogy {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `trilogy presets | head -2`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
