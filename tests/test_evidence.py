"""``--evidence report.json``: a ``trilogy demo`` report read and checked, who won each task (ties within the
larger spread, lower-is-better metrics, n/a cells), and the citations ``trilogy recommend`` and ``trilogy
compare`` print beside their reasoning. The report is ``tests/data/example_report.json`` (invented numbers in
the demo's schema), written to a temporary folder, whole or broken."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from trilogy.cli import main
from trilogy.errors import TrilogyError
from trilogy.evidence import Cell, MeasuredTask, parse_report, read_report
from trilogy.recommend import recommend

EXAMPLE = json.loads((Path(__file__).parent / "data" / "example_report.json").read_text())


@pytest.fixture
def report(tmp_path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(EXAMPLE))
    return path


def two(a: tuple[float, float], b: tuple[float, float], higher_is_better: bool = True) -> MeasuredTask:
    cells = {"encoder": Cell(*a, None, None), "decoder": Cell(*b, None, None)}
    return MeasuredTask("t", "classification", "accuracy", higher_is_better, None, "encoder", cells)


def test_the_winner_stands_clear_of_the_next_by_more_than_the_larger_spread():
    assert two((0.80, 0.02), (0.77, 0.02)).best == "encoder"  # 0.03 apart: more than 0.02, less than 0.02 + 0.02
    tied = two((0.80, 0.02), (0.79, 0.005))
    assert tied.best is None and tied.top == ["encoder", "decoder"] and tied.notebook_verdict == "tie"
    assert tied.verdict(["decoder"]) == "tie" and tied.verdict(["decoder", "encoder"]) == "agrees"
    lower = two((1.9, 0.01), (1.6, 0.01), higher_is_better=False)
    assert lower.ranked == ["decoder", "encoder"] and lower.best == "decoder"
    assert lower.notebook_verdict == "does not" and lower.verdict([]) is None


def test_the_example_report(report):
    tasks = {task.name: task for task in read_report(report).tasks}
    assert tasks["polarity"].best == "encoder" and tasks["polarity"].notebook_verdict == "agrees"
    # pos: encoder and prefix-lm 0.007 apart, within prefix-lm's 0.009; encoder-decoder n/a is left out
    assert tasks["pos"].top == ["encoder", "prefix-lm"] and tasks["pos"].notebook_verdict == "tie"
    assert tasks["pos"].results["encoder-decoder"].reason == "no token head on an encoder-decoder"
    assert tasks["plurals"].top == ["decoder", "prefix-lm"] and tasks["plurals"].notebook_verdict == "does not"
    assert tasks["plurals"].verdict(["decoder", "prefix-lm"]) == "agrees"  # both at the top are decoder-only
    assert tasks["lm"].ranked == ["decoder", "prefix-lm", "encoder-decoder"]  # nats: lower is better
    assert tasks["lm"].best == "decoder" and tasks["lm"].notebook_verdict == "agrees"
    assert read_report(report.parent).path == report  # the folder holding it will do


def test_a_report_as_json_reads_back_the_same(report):
    read = read_report(report)
    assert parse_report(json.loads(json.dumps(read.to_dict())), report) == read
    assert read.to_dict()["tasks"][1] | {"results": None} == {
        "name": "pos", "kind": "tagging", "metric": "token_accuracy", "higher_is_better": True, "baseline": 0.861,
        "results": None, "best": None, "tied": ["encoder", "prefix-lm"], "notebook_says": "encoder",
        "notebook_verdict": "tie"}


@pytest.mark.parametrize("task, kinds, verdicts", [
    ("classify the sentiment of movie reviews", ["classification"], {"polarity": "agrees"}),
    ("find the names of people in each sentence", ["span", "tagging"], {"pos": "tie"}),
    ("correct the spelling of words", ["seq2seq"], {"plurals": "does not"}),
    ("autocomplete code as they type", ["lm"], {"lm": "agrees"}),
])
def test_recommend_cites_the_tasks_of_its_kind(report, capsys, task, kinds, verdicts):
    assert main(["recommend", task, "--json", "--evidence", str(report)]) == 0
    answer = json.loads(capsys.readouterr().out)
    evidence = answer.pop("evidence")
    assert answer == recommend(task).to_dict()
    assert evidence["kinds"] == kinds and evidence["report"] == str(report)
    assert {t["name"]: t["verdict"] for t in evidence["tasks"]} == verdicts


def test_recommend_text_with_and_without_evidence(report, capsys):
    assert main(["recommend", "correct the spelling of words"]) == 0
    plain = capsys.readouterr().out
    assert "Measured" not in plain
    assert main(["recommend", "correct the spelling of words", "--evidence", str(report)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(plain)
    assert text[len(plain):].splitlines() == [
        f"Measured ({report}), its seq2seq tasks (relation: restates):",
        "  on plurals (seq2seq), exact_match (higher is better): decoder 0.620 ± 0.020 vs prefix-lm 0.605 ± 0.010 "
        "vs encoder-decoder 0.550 ± 0.030 vs encoder n/a (an encoder does not generate); baseline 0.412",
        "    tie: decoder, prefix-lm (within the larger spread): does not agree with the recommendation "
        "(encoder-decoder)"]
    assert main(["recommend", "bananas are yellow", "--evidence", str(report)]) == 0
    assert "nothing to check without a recommendation" in capsys.readouterr().out
    assert main(["recommend", "fill in the missing word", "--evidence", str(report)]) == 0
    assert "names no task kind" in capsys.readouterr().out


def test_recommend_says_when_the_report_has_no_task_of_its_kind(report, capsys):
    report.write_text(json.dumps({"tasks": EXAMPLE["tasks"][:1]}))
    assert main(["recommend", "autocomplete code as they type", "--evidence", str(report)]) == 0
    assert f"Measured ({report}): no lm task in the report (relation: open)" in capsys.readouterr().out


COMPARE = ["compare", "--d-model", "32", "--heads", "2", "--d-ff", "64", "--layers", "2", "--batch", "1",
           "--seq", "8"]


def test_compare_adds_the_measured_rows(report, capsys):
    assert main([*COMPARE, "--json"]) == 0
    assert "evidence" not in json.loads(capsys.readouterr().out)
    assert main([*COMPARE, "--json", "--evidence", str(report)]) == 0
    evidence = json.loads(capsys.readouterr().out)["evidence"]
    assert evidence == read_report(report).to_dict()
    assert [(t["name"], t["best"], t["notebook_says"], t["notebook_verdict"]) for t in evidence["tasks"]] == [
        ("polarity", "encoder", "encoder", "agrees"), ("pos", None, "encoder", "tie"),
        ("plurals", None, "encoder-decoder", "does not"), ("lm", "decoder", "decoder", "agrees")]
    assert main([*COMPARE, "--evidence", str(report)]) == 0
    text = capsys.readouterr().out
    table = text[text.index(f"Measured ({report})"):].splitlines()
    assert table[1].split() == ["task", "metric", "encoder", "decoder", "prefix-lm", "encoder-decoder", "baseline",
                                "notebook", "says"]
    assert table[4].split() == ["plurals", "(seq2seq)", "exact_match", "↑", "n/a", "0.620", "±", "0.020", "0.605",
                                "±", "0.010", "0.550", "±", "0.030", "0.412", "encoder-decoder:", "does", "not"]
    assert table[5].split()[:4] == ["lm", "(lm)", "nats_per_character", "↓"]
    assert "  pos: tie: encoder, prefix-lm (within the larger spread); n/a: encoder-decoder (no token head on an " \
           "encoder-decoder)" in table


def broken(change) -> dict:
    data = copy.deepcopy(EXAMPLE)
    change(data)
    return data


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{ not json", "not JSON (Expecting property name enclosed in double quotes at line 1 column 3)"),
    (b"\xff\xfe", "not JSON (not UTF-8 text)"),
    ([1, 2], "not a trilogy demo report: expected an object with a list of tasks"),
    ({"units": []}, "not a trilogy demo report"),
    (broken(lambda d: d["tasks"].__setitem__(0, "polarity")), "tasks[0] must be an object, got str"),
    (broken(lambda d: d["tasks"][1].update(kind="ner")), "tasks[1] (pos): kind must be one of classification, "
                                                          'tagging, span, seq2seq, lm, got "ner"'),
    (broken(lambda d: d["tasks"][0].pop("higher_is_better")), "higher_is_better must be true or false, got null"),
    (broken(lambda d: d["tasks"][0].update(baseline="0.5")), 'baseline must be a number or null, got "0.5"'),
    (broken(lambda d: d["tasks"][0].update(notebook_says="bert")), "notebook_says must be one of encoder, "),
    (broken(lambda d: d["tasks"][0]["results"].update(gpt={})), "results must be an object keyed by some of"),
    (broken(lambda d: d["tasks"][0]["results"]["encoder"].update(score=True)),
     "tasks[0] (polarity): results.encoder.score must be a number or null, got true"),
    (broken(lambda d: d["tasks"][0]["results"]["decoder"].update(spread=-0.1)),
     "results.decoder.spread must be a number >= 0, or null (one seed), got -0.1"),
    (broken(lambda d: d["tasks"][1]["results"]["encoder-decoder"].pop("reason")),
     "tasks[1] (pos): results.encoder-decoder.reason must be the reason it has no score, got null"),
])
@pytest.mark.parametrize("command", [["recommend", "classify reviews"], ["compare", "--layers", "2"]])
def test_a_bad_report_is_one_line_and_exit_2(tmp_path, capsys, command, content, message):
    path = tmp_path / "report.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    assert main([*command, "--evidence", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"trilogy {command[0]}: error: {path}: ") and message in err
    with pytest.raises(TrilogyError, match=f"^{re.escape(str(path))}: "):
        read_report(path)


def test_a_single_seed_report_is_cited_but_ranks_nothing(tmp_path):
    data = json.loads((Path(__file__).parent / "data" / "example_report.json").read_text())
    for task in data["tasks"]:
        for cell in task["results"].values():
            if cell.get("score") is not None:
                cell["spread"] = None
    (tmp_path / "report.json").write_text(json.dumps(data))
    report = read_report(tmp_path / "report.json")
    for task in report.tasks:
        assert task.best is None and task.top == [] and task.notebook_verdict is None
        assert task.outcome() == "not ranked: one seed measures no spread"
        assert "(one seed)" in task.figures()
