"""``trilogy.viz.show`` without a browser: the fragment is scoped (so that many live in one notebook), token
labels are clean, the filters keep what they name, weights are packed one byte each, the lens view holds
``logit_lens``'s data, and bad requests fail with one line. The browser side is tests/test_attention_views.py
and tests/test_viz_live_page.py; the live view's Python side tests/test_viz_live.py."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
import torch

from trilogy import Tokenization
from trilogy.viz import AttentionView, logit_lens, show

from .conftest import tiny
from .explorer_helpers import PACKED, embedded, weights


def trained_tokenizer(kind: str):
    """A small BPE tokenizer, byte-level (GPT-2's ``Ġ``) or sentencepiece-style (``▁``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if kind == "byte-level":
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    else:
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    text = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 20
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=60, initial_alphabet=list("abcdefghijklmnopqrstuvwxyz")))
    return tok


def test_two_views_are_scoped_apart():
    gpt = tiny("tiny-gpt2")
    first, second = show(gpt, [5, 6, 7]), show(gpt, [5, 6, 7], view="model")
    assert isinstance(first, AttentionView) and first._repr_html_() == first.html
    ids = [re.match(r'<div id="([\w-]+)" class="tri">', view.html).group(1) for view in (first, second)]
    assert ids[0] != ids[1]
    for view, root in zip((first, second), ids, strict=True):
        style = re.search(r"<style>(.*?)</style>", view.html, flags=re.S).group(1)
        selectors = [s.strip() for rule in style.split("}") if "{" in rule for s in rule.split("{")[0].split(",")]
        assert selectors and all(s.startswith(f"#{root}") for s in selectors), selectors
        script = re.findall(r"<script>(.*?)</script>", view.html, flags=re.S)
        assert len(script) == 1 and script[0].strip().startswith("(function () {")
        assert script[0].strip().endswith("})();")  # nothing declared outside the function
        assert f'document.getElementById("{root}")' in script[0] and "require" not in script[0]
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", view.html)
        assert "<link" not in view.html and " src=" not in view.html


@pytest.mark.parametrize("kind, marker", [("byte-level", "Ġ"), ("sentencepiece", "▁")])
def test_token_labels_are_clean(kind, marker):
    gpt = tiny("tiny-gpt2", tokenization=Tokenization(trained_tokenizer(kind)))
    assert any(marker in t for t in gpt.tokenizer.encode("the cat sat on the mat").tokens)  # the artefact exists
    [data] = embedded(show(gpt, "the cat sat on the mat", generate=3).html)
    labels = data["kinds"]["decoder"]["queries"]
    assert len(labels) == len(gpt.tokenizer.encode("the cat sat on the mat").ids) + 3
    assert not any(marker in label for label in labels)
    assert "".join(labels[: -3]) == "thecatsatonthemat"


def test_layer_and_head_filters_keep_those_weights():
    bert = tiny("tiny-bert")
    [data] = embedded(show(bert, [5, 6, 7, 8], layers=[1], heads=[0, 2]).html)
    kind = data["kinds"]["encoder"]
    assert kind["layers"] == [1] and kind["heads"] == [0, 2]
    with torch.no_grad():
        expected = bert.run(torch.tensor([[5, 6, 7, 8]]), return_attention=True).attentions["encoder"][1][0]
    assert torch.allclose(weights(kind, 0), expected[[0, 2]], atol=PACKED)
    assert kind["vectors"][0] is not None


def test_weights_are_packed_one_byte_each():
    long = tiny("tiny-bert", max_seq_len=512)
    html = show(long, list(range(3, 403)), heads=[0]).html
    weights_bytes = 2 * 1 * 400 * 400  # layers x heads x T x S
    vectors_bytes = 2 * 2 * 1 * 400 * long.config.d_head * 4  # layers x (q, k) x heads x T x D, float32
    mask_bytes = 400 * 400 // 8  # one bit per (query, key)
    page_bytes = len(show(long, [3, 4], heads=[0]).html)  # the explorer itself, with almost no data
    assert len(html) < 4 / 3 * (weights_bytes + vectors_bytes + mask_bytes) + page_bytes + 2 * 8 * 400  # + labels


@pytest.mark.parametrize("call, message", [
    (lambda: show(tiny("tiny-gpt2"), [1, 2], view="graph"), "view must be one of"),
    (lambda: show(tiny("tiny-gpt2"), [1, 2], layers=[2]), "layers must be among 0..1"),
    (lambda: show(tiny("tiny-gpt2"), [1, 2], heads=[4]), "heads must be among 0..3"),
    (lambda: show(tiny("tiny-bert"), [1, 2], generate=2), "generate= is for decoder-only"),
    (lambda: show(tiny("tiny-gpt2"), [1, 2], target=[3]), "a target is for encoder-decoder"),
    (lambda: show(tiny("tiny-gpt2"), "hello"), "token ids separated by spaces"),
    (lambda: show(tiny("tiny-gpt2"), [1, 2], generate=0), "generate must be"),
    (lambda: show(tiny("tiny-gpt2"), [1], view="lens"), "the lens follows the next token: give two tokens"),
    (lambda: show(tiny("tiny-gpt2"), [1, 2], lens=True, lens_target="5 6"), "lens_target must be one token; '5 6' is 2"),
    (lambda: show(tiny("tiny-gpt2"), [1, 2], lens=True, lens_target=1024), r"among 0\.\.1023, got 1024"),
    (lambda: show(tiny("tiny-bert", head="none"), [1, 2], view="lens"), "reads through the head over the vocabulary"),
])
def test_bad_requests_fail_with_one_line(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_save_writes_a_page(tmp_path):
    path = show(tiny("tiny-t5"), [5, 6, 7], target=[8, 9]).save(tmp_path / "t5.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and len(embedded(text)) == 1
    assert list(embedded(text)[0]["kinds"]) == ["encoder", "decoder", "cross"]


def lens_floats(packed: str, shape: torch.Size) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(packed), dtype="<f4").copy()).reshape(shape)


def check_lens(packed: dict, lens) -> None:
    """The page's lens is ``lens``, as ``logit_lens`` computes it."""
    assert (packed["rows"], packed["positions"], packed["targets"]) == (lens.rows, lens.positions, lens.targets)
    shape = lens.target_probabilities.shape
    assert torch.equal(lens_floats(packed["target_probability"], shape), lens.target_probabilities)
    assert torch.equal(lens_floats(packed["top_probability"], shape), lens.top_probabilities)
    assert [[packed["tokens"][i] for i in row] for row in packed["top"]] == lens.top_labels


def test_the_lens_follows_the_next_token_of_a_causal_model():
    gpt = tiny("tiny-gpt2")
    [data] = embedded(show(gpt, [5, 6, 7, 8], view="lens").html)
    check_lens(data["lens"], logit_lens(gpt, torch.tensor([[5, 6, 7]]), torch.tensor([6, 7, 8])))
    assert data["view"] == "lens" and data["kinds"]["decoder"]["layers"] == [0, 1]  # the other views too
    [data] = embedded(show(gpt, [5, 6, 7, 8], lens=True, lens_target=9).html)
    check_lens(data["lens"], logit_lens(gpt, torch.tensor([[5, 6, 7, 8]]), 9))
    assert data["view"] == "head"


def test_the_lens_of_t5_reads_the_decoder_and_of_bert_each_token():
    t5, bert = tiny("tiny-t5"), tiny("tiny-bert")
    [data] = embedded(show(t5, [5, 6, 7], target=[8, 9, 10], view="lens").html)
    start = t5.config.decoder_start_token_id
    check_lens(data["lens"], logit_lens(t5, torch.tensor([[5, 6, 7]]), torch.tensor([8, 9, 10]),
                                        decoder_input_ids=torch.tensor([[start, 8, 9]])))
    [data] = embedded(show(bert, [5, 6, 7], view="lens").html)
    check_lens(data["lens"], logit_lens(bert, torch.tensor([[5, 6, 7]]), torch.tensor([5, 6, 7])))


def test_views_without_the_lens_are_as_before():
    [data] = embedded(show(tiny("tiny-gpt2"), [5, 6, 7]).html)
    assert list(data) == ["model", "view", "kinds", "generation"]
    assert list(data["kinds"]["decoder"]) == ["queries", "keys", "layers", "heads", "weights", "allowed", "vectors"]
