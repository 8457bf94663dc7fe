"""Adding an objective touches one registry: a dummy objective, registered here and nowhere else, trains
through `trilogy train`, evaluates with its own metric and baseline through `trilogy eval`, and is refused for
another family."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from trilogy.cli import main
from trilogy.data.stream import pack
from trilogy.objectives import IGNORE, OBJECTIVES, Objective, get_objective, pad_rows, register

from .train_helpers import train_args, write_text


class PreviousToken(Objective):
    """A decoder predicts the token *before* each position (the first predicts nothing)."""

    name, arch, head = "previous-token", "decoder", "lm"
    needs = ("pad", "eos")
    eval_sums = ("rows",)

    def epoch_items(self, batches):
        return pack(batches.tokens, batches.seq_len, batches.seq_len, batches.keep_last)

    def collate(self, batches, rows: list[Any], generator: torch.Generator):
        input_ids, attention_mask = pad_rows([torch.from_numpy(row) for row in rows], batches.special["pad"])
        labels = input_ids.roll(1, dims=1).masked_fill(~attention_mask.bool(), IGNORE)
        labels[:, 0] = IGNORE
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def eval_batch(self, model, batch, tokenizer, repetition_penalty):
        return [batch["input_ids"].size(0)]

    def eval_metrics(self, sums, corpus, tokenizer, complete):
        return {"rows": sums["rows"]}

    def baselines(self, corpus, tokenizer, seq_len, batch_size, max_batches):
        return {"a constant": {"accuracy": 0.5}}


@pytest.fixture
def previous_token():
    register(PreviousToken())
    yield get_objective(PreviousToken.name)
    del OBJECTIVES[PreviousToken.name]  # known to this test only


def test_a_registered_objective_trains_and_evaluates_with_its_own_metric_and_baseline(
        previous_token, tmp_path, capsys):
    data, out = write_text(tmp_path / "text.txt"), tmp_path / "run"
    assert main(train_args(out, data, "decoder", objective="previous-token", max_steps=4, save_every=0,
                           eval_every=0)) == 0
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["rows"] == 2 * 4  # eval_batches=2 batches of 4 rows
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--batch-size", "4", "--max-batches", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objective"] == "previous-token" and report["metrics"]["rows"] == 3 * 4
    assert report["baselines"] == {"a constant": {"accuracy": 0.5}}


def test_a_registered_objective_is_refused_for_another_family(previous_token, tmp_path, capsys):
    args = train_args(tmp_path / "run", write_text(tmp_path / "text.txt"), "encoder", objective="previous-token")
    assert main(args) == 2
    assert "objective 'previous-token' trains decoder models, not encoder" in capsys.readouterr().err


def test_a_name_not_registered_is_one_line_with_the_known_ones(capsys):
    assert main(["train", "--arch", "decoder", "--objective", "nope", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(name in err for name in ("clm", "mlm", "span", "seq2seq"))
