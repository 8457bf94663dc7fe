"""``trilogy demo``: the matrix's arithmetic (means, spreads, the best cell, the notebook's verdict) on made-up
seeds; then, through ``trilogy.objectives.task_adapters``, a tiny demo end to end: every task and architecture
in report.json with equal FLOPs, n/a cells with reasons, a user's task file, a bad row, and (slow) seeds and a
resume after an interruption."""

from __future__ import annotations

import json

import pytest

from trilogy.cli import main
from trilogy.data.tasks import TASKS
from trilogy.demo.families import ARCHITECTURES
from trilogy.demo.seeds import aggregate, best_of, verdict

TINY = ["--minutes", "0.3", "--max-train", "24", "--max-eval", "6"]


def seed(number: int, scores: dict[str, float | None]) -> dict:
    results = {arch: {"score": score, "flops": 1e9, "reason": None if score is not None else "cannot"}
               for arch, score in scores.items()}
    task = dict(name="t", kind="classification", metric="accuracy", higher_is_better=True, baseline=0.5,
                baseline_name="majority", notebook_says="encoder", claim="c", source="s", train_rows=1, eval_rows=1,
                results=results)
    pretraining = [dict(arch=arch, label=arch, objective="o", params=1, init=None, flops=1e12, tokens=1, seconds=1,
                        steps=1, status="done", curve=[]) for arch in ARCHITECTURES]
    return dict(seed=number, out="x", interrupted=False, precision="fp32", device="cpu", budget=None,
                pretraining=pretraining, tasks=[task])


def test_cells_are_means_and_spreads_and_the_best_must_stand_clear():
    report = aggregate([seed(0, {"encoder": 0.9, "decoder": 0.7, "prefix-lm": 0.6, "encoder-decoder": None}),
                        seed(1, {"encoder": 0.8, "decoder": 0.7, "prefix-lm": 0.6, "encoder-decoder": None})])
    task = report["tasks"][0]
    assert task["results"]["encoder"]["score"] == pytest.approx(0.85)
    assert task["results"]["encoder"]["spread"] == pytest.approx(0.1)
    assert task["results"]["encoder-decoder"] == {**task["results"]["encoder-decoder"], "score": None,
                                                  "reason": "cannot"}
    assert task["best"] == "encoder" and task["verdict"] == "agrees" and task["flops_gap"] == 0.0
    report = aggregate([seed(0, {"encoder": 0.9, "decoder": 0.85, "prefix-lm": 0.6, "encoder-decoder": 0.1}),
                        seed(1, {"encoder": 0.8, "decoder": 0.85, "prefix-lm": 0.6, "encoder-decoder": 0.1})])
    assert report["tasks"][0]["best"] is None and report["tasks"][0]["tied"] == ["encoder", "decoder"]
    assert report["tasks"][0]["verdict"] == "tie"
    results = {"a": {"score": 2.0, "spread": 0.0}, "b": {"score": 1.0, "spread": 0.0}}
    assert best_of(results, higher_is_better=False) == ("b", ["b"])
    assert verdict("decoder", "b", ["b"]) == "does not" and verdict(None, "b", ["b"]) is None
    # one seed measures no spread: nothing is ranked and no claim is judged
    single = aggregate([seed(0, {"encoder": 0.9, "decoder": 0.85, "prefix-lm": 0.6, "encoder-decoder": 0.1})])
    assert (single["tasks"][0]["best"], single["tasks"][0]["tied"], single["tasks"][0]["verdict"]) == (None, [], None)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A tiny demo over every built-in task and a user's classification file."""
    folder = tmp_path_factory.mktemp("demo")
    task_file = folder / "colours.jsonl"
    rows = [{"text": f"the {word} {thing}", "label": label} for thing in ("car", "sky", "shirt", "wall", "cup")
            for word, label in (("red", "warm"), ("orange", "warm"), ("blue", "cold"), ("green", "cold"))]
    task_file.write_text("".join(json.dumps(row) + "\n" for row in rows * 3))
    out = folder / "out"
    code = main(["demo", *TINY, "--task", str(task_file), "--out", str(out)])
    return dict(code=code, out=out, report=json.loads((out / "report.json").read_text()))


def test_every_task_and_architecture_is_in_the_report(demo):
    assert demo["code"] == 0
    report = demo["report"]
    assert [task["name"] for task in report["tasks"]] == [*TASKS, "colours"]
    for task in report["tasks"]:
        assert {"name", "kind", "metric", "higher_is_better", "baseline", "notebook_says", "results"} <= set(task)
        assert set(task["results"]) == set(ARCHITECTURES)
        for result in task["results"].values():
            assert {"score", "spread", "flops"} <= set(result)
            assert result["score"] is not None or result["reason"]
        assert task["flops_gap"] is None or task["flops_gap"] < 1.0  # a step or two each: within a step
    assert report["pretraining_flops_gap"] < 1.0  # the 5% of a real run needs tens of steps (docs/demo.md)
    for name in ("report.md", "report.html"):
        assert "Task x architecture" in (demo["out"] / name).read_text()


def test_a_bad_row_in_a_task_file_is_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "a"}\n{"text": "no label"}\n')
    code = main(["demo", "--minutes", "0.1", "--tasks", "polarity", "--task", str(bad), "--out",
                 str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code != 0 and f"{bad}:2" in error and "\n" not in error


def test_init_starts_an_architecture_from_a_hugging_face_checkpoint(tmp_path):
    """--init decoder=FOLDER: a GPT-2 written by transformers (with a tokenizer.json beside it) is fine-tuned as
    it is, not pre-trained; the report says where it came from."""
    import transformers

    from trilogy.data import train_tokenizer
    from trilogy.data.pretraining import pretraining_corpus

    tokenizer = train_tokenizer("decoder", pretraining_corpus(max_bytes=100_000), 300)
    config = transformers.GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=32, n_layer=1, n_head=2,
                                     n_positions=128, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    out = tmp_path / "out"
    code = main(["demo", "--minutes", "0.1", "--max-train", "16", "--max-eval", "4", "--tasks", "polarity",
                 "--init", f"decoder={folder}", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0
    [decoder] = [row for row in report["pretraining"] if row["arch"] == "decoder"]
    assert decoder["init"] == str(folder) and decoder["params"] == sum(
        p.numel() for p in transformers.GPT2LMHeadModel(config).parameters())
    assert report["tasks"][0]["results"]["decoder"]["score"] is not None


def test_every_seed_keeps_the_first_seed_s_budget(tmp_path):
    """Seeds differ only in their random draws: the later seeds train to the first seed's FLOP quotas, and the
    report's cells carry spreads."""
    out = tmp_path / "out"
    code = main(["demo", "--minutes", "0.1", "--max-train", "16", "--max-eval", "4", "--tasks", "polarity",
                 "--seeds", "2", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["seeds"] == [0, 1]
    first, second = report["budgets"]
    assert first["pretrain_flops"] == second["pretrain_flops"] and first["task_flops"] == second["task_flops"]
    assert all(cell["spread"] is not None for cell in report["tasks"][0]["results"].values()
               if cell["score"] is not None)
