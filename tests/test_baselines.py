"""The copy-the-function-name baseline that `trilogy eval` and the demo read a docstring model against."""

from __future__ import annotations

import json

import pytest

from trilogy.data import load_corpus, train_tokenizer
from trilogy.data.task_metrics import word_f1
from trilogy.train.baselines import copy_name_scores, name_as_docstring


@pytest.mark.parametrize("source, summary", [
    ("def parse_args(self, argv=None):\n    return argv", "Parse args"),
    ("async def getEventLoop():\n    pass", "Get event loop"),
    ("def __init__(self):\n    pass", "Init"),
    ("x = 1", ""),
])
def test_name_as_docstring(source, summary):
    assert name_as_docstring(source) == summary


def test_copy_name_scores_against_the_decoded_references(tmp_path):
    """Every validation pair is scored once, in order, against its target as the tokenizer gives it back."""
    names = ["read_file", "open_socket", "close", "parseHeader", "get_value", "set_value", "run", "stop"]
    records = [{"source": f"def {name}{i}(x):\n    return x", "target": f"{name.replace('_', ' ')} {i} now"}
               for i in range(40) for name in names]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    corpus = load_corpus(str(path))
    tokenizer = train_tokenizer("encoder-decoder", corpus.texts("train"), 400)
    pairs = list(corpus.validation)
    expected = sum(word_f1(name_as_docstring(source), target) for source, target in pairs) / len(pairs)
    scores = copy_name_scores(corpus, tokenizer, seq_len=32, batch_size=8, max_batches=None)
    assert scores["word_f1"] == pytest.approx(expected)
    assert scores["exact_match"] == 0.0
    few = copy_name_scores(corpus, tokenizer, seq_len=32, batch_size=8, max_batches=1)
    assert few["word_f1"] == pytest.approx(sum(word_f1(name_as_docstring(s), t) for s, t in pairs[:8]) / 8)
