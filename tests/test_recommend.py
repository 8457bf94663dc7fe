"""``trilogy recommend`` reasons from the notebook's decision factors. The phrasings it is tested on live in
tests/data/recommend_phrasings.json, which the implementation never reads, and none of their wording is
written into the implementation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trilogy.cli import main
from trilogy.recommend import recommend

PHRASINGS = json.loads((Path(__file__).parent / "data" / "recommend_phrasings.json").read_text())
FAMILIES = ("encoder-only", "decoder-only", "encoder-decoder")
SOURCE = Path(__file__).resolve().parents[1] / "src" / "trilogy" / "recommend.py"


def word_runs(text: str, n: int) -> set[str]:
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@pytest.mark.parametrize("family,task", [(f, t) for f in FAMILIES for t in PHRASINGS[f]])
def test_phrasings(family, task):
    answer = recommend(task)
    assert answer.architecture == family, answer.to_dict()
    assert answer.runner_up not in (None, family) and 0.5 <= answer.confidence <= 1


@pytest.mark.parametrize("task", PHRASINGS["nothing"] + PHRASINGS["unanswered"])
def test_nothing_to_go_on(task):
    answer = recommend(task)
    assert answer.architecture is None and answer.runner_up is None and answer.confidence is None
    assert "nothing to go on" in answer.reasons[0]


def test_the_phrasings_are_not_in_the_code():
    code = word_runs(SOURCE.read_text(), 4)
    for family in (*FAMILIES, "nothing"):
        for task in PHRASINGS[family]:
            assert not word_runs(task, 4) & code, task


def test_factors_found_and_what_they_imply():
    answer = recommend("put Spanish subtitles into English")
    relation, output = answer.factors["relation"], answer.factors["output"]
    assert (relation.value, relation.evidence) == ("restates", ["into english"])
    assert output.value == "text" and output.evidence == ["implied by relation=restates"]
    assert answer.runner_up == "decoder-only"
    # the same words, asked for a judgement instead: "into" sorts into classes, it does not rewrite
    label = recommend("sort Spanish subtitles into three categories")
    assert label.architecture == "encoder-only" and "relation" not in label.factors


def test_confidence_follows_the_margin():
    clear = recommend("classify the sentiment of each review")
    torn = recommend("an assistant that recognises the intent of each request")
    assert clear.confidence > torn.confidence >= 0.5
    assert clear.confidence_word == "high"


def test_efficiency_and_data_alone_decide_nothing():
    answer = recommend("it must be fast and cheap, with few-shot data")
    assert set(answer.factors) == {"efficiency", "data"} and answer.architecture is None


def test_command_json_and_text(capsys):
    assert main(["recommend", "--json", "summarise", "contracts", "for", "lawyers"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["architecture"] == "encoder-decoder" and answer["runner_up"] == "decoder-only"
    assert answer["factors"]["relation"] == {"value": "restates", "strength": 0.71, "evidence": ["summarise"]}
    assert 0.5 < answer["confidence"] <= 1
    assert main(["recommend", "tag", "each", "word", "with", "its", "part", "of", "speech"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Recommended: Encoder-only (BERT-style) (confidence") and "output: label" in text
    assert main(["recommend", "bananas are yellow"]) == 0
    assert "No recommendation" in capsys.readouterr().out
