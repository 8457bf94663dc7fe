"""One error type: ``TrilogyError`` (a ValueError) for everything a user can get wrong, printed by the CLI as one
line with exit status 2; any other exception is a bug and reaches the CLI's caller with its traceback."""

from __future__ import annotations

import traceback

import pytest
import torch

import trilogy
from trilogy.cli import main
from trilogy.config import ModelConfig


def test_the_error_types_are_one_family_and_stay_value_errors():
    assert issubclass(trilogy.TrilogyError, ValueError)
    assert issubclass(trilogy.CheckpointError, trilogy.TrilogyError)
    with pytest.raises(trilogy.TrilogyError, match="unknown preset"):
        ModelConfig.from_preset("no-such-preset")
    with pytest.raises(trilogy.TrilogyError, match="outside"):
        trilogy.build("tiny-gpt2")(torch.tensor([[1, 10**6]]))
    with pytest.raises(TypeError) as wrong_kind:  # still a TypeError for ``except TypeError``
        trilogy.build("tiny-gpt2")([[1, 2]])
    assert isinstance(wrong_kind.value, trilogy.TrilogyError)
    with pytest.raises(trilogy.CheckpointError, match="no checkpoint folder"):
        trilogy.from_pretrained("/nonexistent/checkpoint")


def test_a_bad_option_value_is_one_line_and_exit_2(capsys):
    assert main(["train", "--lr", "abc"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("trilogy train: error: argument --lr: invalid float value: 'abc'")


def test_a_user_error_from_inside_the_library_is_one_line_and_exit_2(capsys):
    assert main(["size", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trilogy size: error:") and "Traceback" not in err


@pytest.mark.parametrize("planted", [ValueError("a bug, not a user error"), TypeError("a bug"), KeyError("bug")])
def test_an_exception_planted_inside_the_library_reaches_the_caller_with_its_traceback(monkeypatch, planted):
    def broken(name, **changes):
        raise planted

    monkeypatch.setattr(ModelConfig, "from_preset", staticmethod(broken))
    with pytest.raises(type(planted)) as raised:
        main(["size", "tiny-gpt2"])
    assert raised.value is planted
    assert "broken" in [frame.name for frame in traceback.extract_tb(raised.tb)]
