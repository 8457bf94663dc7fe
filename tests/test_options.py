"""``trilogy train``'s options come from ``RunOptions``' fields: every field is an option, of the field's type,
with the field's doc and default in its help."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from trilogy import option_fields
from trilogy.cli import build_parser
from trilogy.objectives import default_objective
from trilogy.train.options import RunOptions

SAMPLES = {int: "7", float: "0.25", str: "x"}


def train_parser():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices["train"]


def test_every_run_option_is_a_train_option_of_its_type():
    parser = train_parser()
    hints = typing.get_type_hints(RunOptions)
    names = [field.name for field in dataclasses.fields(RunOptions)]
    for name in names:
        kind = option_fields._value_type(hints[name])
        flag = f"--{name.replace('_', '-')}"
        argv = [flag] if kind is bool else [flag, SAMPLES[kind]]
        args = parser.parse_args(argv)
        assert option_fields.given(args, names) == {name: True if kind is bool else kind(SAMPLES[kind])}, name
    assert option_fields.given(parser.parse_args([]), names) == {}  # nothing given: RunOptions fills the defaults


def test_the_help_shows_each_doc_and_default():
    text = train_parser().format_help()
    for field in dataclasses.fields(RunOptions):
        assert field.metadata["doc"].split()[0] in text
    assert "peak learning rate (default 0.001)" in " ".join(text.split())


@pytest.mark.parametrize("hint, expected", [(int, int), (int | None, int), (typing.Optional[str], str)])  # noqa: UP045
def test_optional_types_become_their_value_type(hint, expected):
    assert option_fields._value_type(hint) is expected


def test_resolved_fills_the_run_dependent_defaults_in_a_new_value():
    given = RunOptions(arch="decoder")
    resolved = given.resolved("text", fine_tuning=False)
    assert (resolved.preset, resolved.objective) == ("tiny-gpt2", default_objective("decoder", "text"))
    assert (given.preset, given.objective) == (None, None)  # the options passed in are left as they were
    fine_tuned = RunOptions(arch="decoder", init="some/checkpoint").resolved("text", fine_tuning=True)
    assert fine_tuned.preset is None  # --init gives the architecture
