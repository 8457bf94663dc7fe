"""``trilogy demo`` end to end on a tiny corpus with a seconds-long budget: once straight through (the report's
budget, FLOPs, verdicts and fill-the-blank table), and interrupted with Ctrl-C (a real SIGINT to a real process),
then resumed (slow); the report files, the checkpoints, the equal sizes and the errors."""

from __future__ import annotations

import ast
import html
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer

import trilogy
from trilogy.cli import main
from trilogy.data.docstrings import module_pairs
from trilogy.demo.families import MAX_SIZE_GAP, UNITS, count_parameters, matched_configs
from trilogy.demo.report import SUMMARY_HEADERS

WORDS = ("love", "king", "lord", "night", "sword", "heart", "crown", "death", "fair", "sweet", "good", "noble",
         "speak", "come", "go", "know", "thou", "thee", "my", "the", "and", "not", "to", "of", "is", "in")
NAMES = ("ROMEO", "JULIET", "KING HENRY", "HAMLET", "OTHELLO")
TINY = ["--minutes", "0.2", "--d-model", "32", "--layers", "2", "--seq-len", "32", "--batch-size", "8",
        "--vocab-size", "300", "--eval-batches", "2"]


def write_corpora(folder: Path) -> tuple[Path, Path]:
    """A play-like text (speaker lines of 6-12 words) and code -> docstring pairs from trilogy's own source."""
    rng = random.Random(0)
    lines = []
    for _ in range(700):
        lines.append(f"{rng.choice(NAMES)}:")
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + ".")
        lines.append("")
    text = folder / "play.txt"
    text.write_text("\n".join(lines))
    pairs = folder / "pairs.jsonl"
    sources = [path.read_text() for path in sorted(Path(trilogy.__file__).parent.rglob("*.py"))]
    found = [pair for source in sources for pair in module_pairs(source, ast.parse(source))]
    pairs.write_text("".join(json.dumps({"source": code, "target": doc}) + "\n" for code, doc in found[:150]))
    return text, pairs


def wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting; demo exited with {process.poll()}: {process.stderr.read()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Start a tiny demo, press Ctrl-C once BERT has written a checkpoint, keep the partial report, then resume
    it to the end. Returns the folder and what was seen at each stage."""
    folder = tmp_path_factory.mktemp("demo")
    text, pairs = write_corpora(folder)
    out = folder / "out"
    command = [sys.executable, "-m", "trilogy", "demo", *TINY, "--data", str(text), "--pairs", str(pairs),
               "--out", str(out)]
    env = dict(os.environ, TRILOGY_CACHE=str(folder / "cache"))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    checkpoints = out / "bert" / "checkpoints"
    wait_for(lambda: checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir()), 120,
             process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    partial = dict(returncode=process.returncode, stdout=stdout, stderr=stderr,
                   report=(out / "report.md").read_text(), state=json.loads((out / "demo.json").read_text()),
                   checkpoint_steps=sorted(int(p.name[5:]) for p in checkpoints.glob("step-*")),
                   timeline=(out / "bert" / "timeline.jsonl").read_text().splitlines())
    resumed_code = main(["demo", "--resume", "--out", str(out), "--json"])
    return dict(out=out, partial=partial, resumed_code=resumed_code)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny demo run straight through, in this process."""
    folder = tmp_path_factory.mktemp("finished")
    text, pairs = write_corpora(folder)
    out = folder / "out"
    os.environ["TRILOGY_CACHE"] = str(folder / "cache")
    try:
        assert main(["demo", *TINY, "--data", str(text), "--pairs", str(pairs), "--out", str(out)]) == 0
    finally:
        del os.environ["TRILOGY_CACHE"]
    return out


def test_every_family_spends_the_same_flops_and_the_report_says_so(finished):
    report = json.loads((finished / "report.json").read_text())
    budget = report["budget"]
    assert budget["kind"] == "flops" and budget["flops_per_family"] == budget["per_family"] > 0
    for unit in report["units"]:  # every unit reached its share, to within a step or two (batches vary)
        assert unit["status"] == "done", unit["name"]
        timeline = [json.loads(line) for line in (finished / unit["name"] / "timeline.jsonl").read_text().splitlines()]
        steps = [b["flops"] - a["flops"] for a, b in zip([{"flops": 0}] + timeline, timeline, strict=False)]
        share = next(u.budget_share for u in UNITS if u.name == unit["name"])
        assert abs(unit["flops"] - share * budget["per_family"]) <= 2 * max(steps), unit["name"]
        assert unit["flops"] == timeline[-1]["flops"] and unit["tokens"] == timeline[-1]["tokens"]
        assert unit["family"] in ("bert", "gpt", "t5") and 0 < unit["loss_tokens"] <= unit["tokens"]
        assert unit["flops_per_s"] == pytest.approx(unit["flops"] / unit["seconds"])
    reached = budget["flops_reached"]
    assert all(value == pytest.approx(budget["per_family"], rel=0.05) for value in reached.values())
    assert reached["t5"] == sum(u["flops"] for u in report["units"] if u["family"] == "t5")
    assert budget["flops_spread"] == pytest.approx(max(reached.values()) / min(reached.values()) - 1)
    bert = next(u for u in report["units"] if u["name"] == "bert")
    assert bert["loss_tokens"] < 0.3 * bert["tokens"]  # masked LM: ~15% of the tokens bear the loss
    assert {u["name"]: u["verdict"] is not None for u in report["units"]} == \
        {"bert": True, "gpt": True, "t5-code": False, "t5": True}
    assert report["precision"] in ("fp32", "bf16")


def test_fill_the_blank_table(finished):
    report = json.loads((finished / "report.json").read_text())
    blank = report["common_ground"]["fill_blank"]
    assert blank["blanks"] > 10 and blank["t5"] is None
    assert all(0 <= blank[key] <= 1 for key in ("bert", "gpt", "baseline"))
    markdown = (finished / "report.md").read_text()
    assert "fill the blank" in markdown and f"always \"{blank['baseline_word']}\"" in markdown


@pytest.mark.slow  # runs a whole (tiny) demo twice: minutes on 2 cores
def test_ctrl_c_stops_cleanly_keeps_the_training_and_writes_a_partial_report(demo):
    partial = demo["partial"]
    assert partial["returncode"] == 130, partial["stderr"]
    assert "Traceback" not in partial["stderr"]
    assert "--resume" in partial["stderr"]
    assert partial["report"].startswith("# trilogy demo")
    assert "PARTIAL REPORT" in partial["report"]
    bert = partial["state"]["units"]["bert"]
    assert bert["status"] == "interrupted" and bert["steps"] >= partial["checkpoint_steps"][-1] >= 1
    assert "not trained" in partial["report"]  # the units that never started are listed as such


@pytest.mark.slow  # runs a whole (tiny) demo twice: minutes on 2 cores
def test_resume_continues_to_the_end(demo):
    assert demo["resumed_code"] == 0
    out = demo["out"]
    state = json.loads((out / "demo.json").read_text())
    for unit in UNITS:
        record = state["units"][unit.name]
        assert record["status"] in ("done", "deadline"), (unit.name, record)
        # the timeline goes on from the checkpoint it resumed from: steps 1..N, each once, clock increasing
        timeline = [json.loads(line) for line in (out / unit.name / "timeline.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in timeline]
        assert sorted(set(steps)) == list(range(1, record["steps"] + 1))
        seconds = [r["seconds"] for r in sorted(timeline, key=lambda r: r["step"])]
        assert seconds == sorted(seconds)
    # BERT went on from its checkpoint: the steps up to it were not trained (nor timed) again
    resumed_from = demo["partial"]["checkpoint_steps"][-1]
    before = [json.loads(line) for line in demo["partial"]["timeline"]]
    after = [json.loads(line) for line in (out / "bert" / "timeline.jsonl").read_text().splitlines()]
    assert [r for r in after if r["step"] < resumed_from] == [r for r in before if r["step"] < resumed_from]
    assert state["units"]["bert"]["steps"] > resumed_from
    assert "PARTIAL REPORT" not in (out / "report.md").read_text()


@pytest.mark.slow  # runs a whole (tiny) demo twice: minutes on 2 cores
def test_report_files_are_complete_self_contained_and_agree(demo):
    out = demo["out"]
    report = json.loads((out / "report.json").read_text())
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    assert len(report["summary"]) == len(UNITS)
    for row in report["summary"]:
        assert len(row) == len(SUMMARY_HEADERS)
        for cell in row:
            assert html.escape(cell) in page
            assert cell.replace("|", "\\|") in markdown
    for picture in ("loss_curves.png", "masks.png", "attention.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    for family in ("bert", "gpt", "t5"):  # the interactive attention pages, linked
        assert f'href="attention-{family}.html"' in page
        assert "<script" in (out / f"attention-{family}.html").read_text()
    shown = report["samples"]
    assert shown["gpt"] and shown["bert"] and shown["t5"]
    assert all(len(row["predictions"]) == 5 for row in shown["bert"])
    assert all(row["baseline"] for row in shown["t5"])


@pytest.mark.slow  # runs a whole (tiny) demo twice: minutes on 2 cores
def test_checkpoints_load_and_have_equal_sizes(demo):
    out = demo["out"]
    report = json.loads((out / "report.json").read_text())
    sizes = {}
    for unit in report["units"]:
        model = trilogy.from_pretrained(out / unit["name"])
        assert model.tokenizer is not None
        assert model.num_parameters() == unit["params"]
        sizes[unit["name"]] = unit["params"]
    assert all(abs(size - sizes["gpt"]) <= MAX_SIZE_GAP * sizes["gpt"] for size in sizes.values())


@pytest.mark.slow  # runs a whole (tiny) demo twice: minutes on 2 cores
def test_default_sizes_match_within_ten_percent(demo):
    tokenizers = {family: Tokenizer.from_file(str(demo["out"] / "tokenizers" / f"{family}.json"))
                  for family in ("bert", "gpt", "t5")}
    configs = matched_configs(tokenizers, d_model=128, n_heads=4, n_layers=4, seq_len=128)
    target = count_parameters(configs["gpt"])
    for family, config in configs.items():
        assert abs(count_parameters(config) - target) <= MAX_SIZE_GAP * target, family
    assert configs["t5"].n_layers == configs["t5"].n_decoder_layers == 2


@pytest.mark.parametrize("argv, message", [
    (["--minutes", "0"], "--minutes must be positive"),
    (["--layers", "3"], "--layers must be an even number"),
    (["--resume"], "no demo.json"),
    (["--data", "/no/such/file"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["demo", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # runs a whole (tiny) demo twice: minutes on 2 cores
def test_an_existing_demo_is_not_overwritten(demo, capsys):
    assert main(["demo", "--out", str(demo["out"])]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
def test_one_minute_demo_finishes_in_under_three_minutes(tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "trilogy", "demo", "--minutes", "1", "--out", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "d" / "report.html").is_file()
    assert elapsed < 180, f"took {elapsed:.0f} s"


def test_verdict_needs_a_clear_margin_either_way():
    from trilogy.demo.evaluation import verdict

    def figure(model, baseline, higher_is_better=True):
        return dict(model=model, baseline=baseline, higher_is_better=higher_is_better)

    assert verdict(figure(0.059, 0.056)) == "level"  # 5% better: within the noise of a few batches
    assert verdict(figure(0.137, 0.054)) == "better"
    assert verdict(figure(0.133, 0.194)) == "worse"
    assert verdict(figure(1.66, 2.375, higher_is_better=False)) == "better"
    assert verdict(figure(2.30, 2.375, higher_is_better=False)) == "level"
    assert verdict(figure(0.05, 0.0)) == "better"  # a baseline of 0 does not divide by zero
    assert verdict(figure(0.0, 0.0)) == "level"
    assert verdict(None) is None
