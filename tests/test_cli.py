"""The ``trilogy`` command maps names to typed functions: each command is a function of one options dataclass,
with a docstring, and the CLI builds the command's parser from that dataclass's fields and parses the command
line back into it (``trilogy.option_fields``)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import subprocess
import sys
import typing

import pytest

from trilogy import option_fields
from trilogy.cli import COMMANDS, build_parser, main, options_type
from trilogy.commands.generate import GenerateOptions
from trilogy.commands.size import SizeOptions
from trilogy.option_fields import UserError, option, options_of


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_a_function_of_an_options_dataclass(name):
    function = COMMANDS[name]
    assert inspect.isfunction(function)
    (parameter,) = inspect.signature(function).parameters.values()
    hints = typing.get_type_hints(function)
    assert dataclasses.is_dataclass(hints[parameter.name]) and isinstance(hints[parameter.name], type)
    assert hints["return"] is int
    assert inspect.getdoc(function), f"{name}: the docstring is the command's help"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_each_of_its_options(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: trilogy {name}")
    assert inspect.getdoc(COMMANDS[name]).partition("\n")[0] in " ".join(text.split())
    for field in dataclasses.fields(options_type(COMMANDS[name])):
        if "options" not in field.metadata:
            flag = field.name if field.metadata.get("positional") else f"--{field.name.replace('_', '-')}"
            assert flag in text, f"{name}: {flag}"


def test_the_command_list_shows_each_command_with_its_summary(capsys):
    assert main([]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, function in COMMANDS.items():
        assert f"{name} {inspect.getdoc(function).partition(chr(10))[0]}" in text


def test_the_parser_imports_no_command_options_until_the_command_runs():
    """Building the parser (and ``trilogy --help``) leaves the demo's options, which import the trainer, unread."""
    code = ("import sys; from trilogy.cli import build_parser; build_parser().format_help(); "
            "print('trilogy.demo.run' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def parsed(argv: list[str]):
    args = build_parser().parse_args(argv)
    return option_fields.parse(args, options_type(args.function))


def test_the_command_line_becomes_the_options_dataclass():
    assert parsed(["size", "tiny-gpt2", "--dtype", "bf16", "--inference"]) == \
        SizeOptions(model="tiny-gpt2", precision="bf16", inference=True)
    assert parsed(["generate", "ckpt", "--chat", "hi", "--top-k", "5"]) == \
        GenerateOptions(path="ckpt", chat="hi", top_k=5)
    assert parsed(["recommend", "summarize", "contracts"]).task == ["summarize", "contracts"]
    train = parsed(["train", "--arch", "decoder", "--dtype", "bf16", "--out", "runs/x"])
    assert train.run == {"arch": "decoder", "precision": "bf16"} and train.out == "runs/x"  # only what was given
    assert parsed(["demo", "--minutes", "2"]).demo == {"minutes": 2.0}


@pytest.mark.parametrize("argv, message", [
    (["generate", "ckpt", "--prompt", "a", "--chat", "b"], "argument --chat: not allowed with argument --prompt"),
    (["generate", "ckpt"], "one of the arguments --prompt --chat is required"),
    (["size", "tiny-gpt2", "--training", "--inference"], "not allowed with argument --training"),
    (["size", "tiny-gpt2", "--attention", "fast"], "argument --attention: invalid choice: 'fast'"),
    (["attention", "tiny-gpt2", "--text", "hi"], "the following arguments are required: --out"),
    (["train", "--arch", "decoder"], "--out DIR is required (or --resume DIR)"),
    (["train", "--out", "runs/x"], "--arch is required"),
    (["train", "--resume", "runs/a", "--out", "runs/b"], "--out, when given, must be the same folder"),
    (["train", "--arch", "decoder", "--out", "runs/x", "--threads", "0"], "--threads must be positive"),
    (["demo", "--seeds", "0"], "--seeds must be at least 1"),
    (["eval", "ckpt", "--repetition-penalty", "0"], "--repetition-penalty must be > 0"),
    (["compare", "--heads", "0"], "--heads must be positive"),
])
def test_options_that_do_not_go_together_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"trilogy {argv[0]}: error:") and message in err


def test_the_options_dataclasses_check_themselves_when_called_from_python():
    with pytest.raises(UserError, match="one of --prompt and --chat"):
        GenerateOptions(path="ckpt")
    with pytest.raises(UserError, match="--system goes with --chat"):
        GenerateOptions(path="ckpt", prompt="hi", system="be brief")
    with pytest.raises(UserError, match="do not go together"):
        SizeOptions(model="tiny-gpt2", training=True, inference=True)


@dataclasses.dataclass
class Inner:
    width: int = 8
    name: str = "x"


@dataclasses.dataclass(kw_only=True)
class Sample:
    files: list[str] = option(doc="the files", positional=True)
    level: int = option(doc="a required option")
    mode: str = option("fast", "the mode", choices=["fast", "slow"], aliases=("-m",), metavar="MODE")
    left: bool = option(False, "go left", exclusive="side")
    right: bool = option(False, "go right", exclusive="side")
    inner: dict[str, typing.Any] = options_of(Inner, width={"doc": "how wide"})


def sample_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sample")
    option_fields.add_options(parser, Sample)
    return parser


def test_option_fields_positional_list_choices_aliases_exclusive_and_a_nested_dataclass():
    parser = sample_parser()
    options = option_fields.parse(parser.parse_args(["a", "b", "--level", "3", "-m", "slow", "--width", "4"]), Sample)
    assert options == Sample(files=["a", "b"], level=3, mode="slow", inner={"width": 4})
    assert option_fields.parse(parser.parse_args(["a", "--level", "1"]), Sample).inner == {}
    text = " ".join(parser.format_help().split())
    for fragment in ("files the files", "--mode MODE, -m MODE the mode (default fast)", "[--left | --right]",
                     "--width WIDTH how wide (default 8)", "--name NAME (default x)", "--level LEVEL"):
        assert fragment in text
    for argv in (["a"], ["a", "--level", "1", "--left", "--right"], ["a", "--level", "1", "--mode", "medium"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_a_list_flag_given_again_adds_its_values():
    @dataclasses.dataclass
    class Files:
        task: list[str] = option(None, "task files")

    parser = argparse.ArgumentParser()
    option_fields.add_options(parser, Files)
    assert option_fields.parse(parser.parse_args(["--task", "a", "b", "--task", "c"]), Files).task == ["a", "b", "c"]
    assert option_fields.parse(parser.parse_args([]), Files).task is None


def test_a_nested_dataclass_may_be_named_for_a_late_import():
    @dataclasses.dataclass
    class Late:
        run: dict[str, typing.Any] = options_of("trilogy.commands.size:SizeOptions")

    parser = argparse.ArgumentParser()
    option_fields.add_options(parser, Late)
    assert option_fields.parse(parser.parse_args(["tiny-gpt2", "--json"]), Late).run == {"model": "tiny-gpt2",
                                                                                         "json": True}
