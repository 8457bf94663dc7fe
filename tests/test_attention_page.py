"""``trilogy attention`` on a saved checkpoint with a tokenizer, and its page (the explorer of
``trilogy.viz.show``) driven in headless Chromium: pick the kind, layer and head, hover a token, and check what
is drawn against the weights the model computes."""

from __future__ import annotations

import json

import pytest
import torch

import trilogy
from trilogy.cli import main

from .explorer_helpers import PACKED, browser_page, embedded, needs_chromium, offline, weights

WORDS = ["<pad>", "</s>", "<unk>", "the", "cat", "sat", "on", "mat", "le", "chat", "est", "assis"]


def tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    return tok


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = trilogy.build("tiny-t5", tokenization=trilogy.Tokenization(tokenizer()))
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-t5"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def written(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("attention")
    code = main(["attention", str(checkpoint), "--text", "the cat sat on the mat", "--target", "le chat est assis",
                 "--out", str(out), "--no-png", "--json"])
    assert code == 0
    return out / "attention.html"


def expected(checkpoint):
    """The weights, computed here from the loaded checkpoint: kind -> per layer (H, T, S)."""
    model = trilogy.from_pretrained(checkpoint).eval()
    source = torch.tensor([[3, 4, 5, 6, 3, 7]])
    target = torch.tensor([[model.config.decoder_start_token_id, 8, 9, 10, 11]])
    with torch.no_grad():
        out = model.run(source, target, return_attention=True)
    return {kind: [layer[0] for layer in layers] for kind, layers in out.attentions.items()}


def test_page_data_are_the_models_weights(checkpoint, written):
    text = written.read_text()
    assert "http://" not in text.replace('"http://www.w3.org/2000/svg"', "") and "https://" not in text
    [data] = embedded(text)
    kinds = data["kinds"]
    assert kinds["encoder"]["queries"] == ["the", "cat", "sat", "on", "the", "mat"]
    assert kinds["cross"]["keys"] == kinds["encoder"]["queries"]
    assert kinds["cross"]["queries"][1:] == ["le", "chat", "est", "assis"]
    for kind, layers in expected(checkpoint).items():
        for layer, layer_weights in enumerate(layers):
            assert torch.allclose(weights(kinds[kind], layer), layer_weights, atol=PACKED)


@needs_chromium
def test_page_in_headless_chromium(checkpoint, written):
    weights_of = expected(checkpoint)
    with browser_page(written) as (page, errors, requests):
        assert page.locator(".tri-kind-btn").count() == 3
        # cross-attention, layer 1, head 2 alone
        page.locator(".tri-kind-btn[data-kind=cross]").click()
        page.select_option(".tri-layer", "1")
        page.locator(".tri-no-heads").click()
        page.locator(".tri-head-btn[data-head='2']").click()
        assert page.locator(".tri-head-btn.tri-on").all_inner_texts() == ["2"]
        head = weights_of["cross"][1][2]  # (T, S)
        drawn = page.eval_on_selector_all(
            "svg.tri-lines line.tri-edge", "es => es.map(e => [+e.dataset.q, +e.dataset.k, +e.getAttribute('stroke-opacity')])")
        assert len(drawn) == head.numel()  # no weight of a random model rounds to 0
        for q, k, opacity in drawn:
            assert opacity == pytest.approx(float(head[q, k]), abs=PACKED)
        # hover the query "chat": only its lines stay, the keys' blocks are its weights, the status names the top key
        page.locator("svg.tri-lines text.tri-query[data-index='2']").hover()
        shown = page.eval_on_selector_all("svg.tri-lines line.tri-edge", "es => es.map(e => +e.dataset.q)")
        assert shown == [2] * head.size(1)
        blocks = page.eval_on_selector_all("rect.tri-bar-cell[data-side=k]", "rs => rs.map(r => +r.dataset.value)")
        assert blocks == pytest.approx(head[2].tolist(), abs=PACKED)
        status = page.locator(".tri-status")
        top = int(status.get_attribute("data-top"))  # ties are possible in a random model: compare weights
        assert float(head[2, top]) == pytest.approx(float(head[2].max()), abs=2 * PACKED)
        assert '"chat"' in status.inner_text()
        # the encoder view has the source on both axes
        page.locator(".tri-kind-btn[data-kind=encoder]").click()
        assert page.locator("svg.tri-lines text.tri-query").all_text_contents() == ["the", "cat", "sat", "on", "the",
                                                                                    "mat"]
        assert not errors
    assert offline(requests), requests


def test_generation_steps_and_view_on_the_page(tmp_path, capsys):
    code = main(["attention", "tiny-gpt2", "--text", "5 17 42", "--generate", "3", "--view", "model", "--out",
                 str(tmp_path), "--no-png", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and len(summary["kinds"]["decoder"]["queries"]) == 6
    [data] = embedded((tmp_path / "attention.html").read_text())
    assert data["view"] == "model" and data["generation"] == {"first": 3, "count": 3}


def test_heatmap_pngs_for_a_preset(tmp_path, capsys):
    code = main(["attention", "tiny-gpt2", "--text", "5 17 42 9", "--out", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["kinds"]["decoder"]["layers"] == 2
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["decoder_layer0.png", "decoder_layer1.png"]
    assert (tmp_path / "decoder_layer0.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args", [["tiny-gpt2", "--text", "hello"], ["nowhere", "--text", "1 2"],
                                  ["tiny-gpt2", "--text", "1 2", "--target", "3"],
                                  ["tiny-bert", "--text", "1 2", "--generate", "3"]])
def test_attention_command_rejects_bad_input(args, tmp_path, capsys):
    assert main(["attention", *args, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("trilogy attention: error:")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(trilogy.PRESETS))
def test_attention_command_every_preset(name, tmp_path, capsys):
    code = main(["attention", name, "--text", "5 17 42 9 3", "--out", str(tmp_path), "--no-png", "--json"])
    summary = json.loads(capsys.readouterr().out)
    config = trilogy.ModelConfig.from_preset(name)
    assert code == 0 and (tmp_path / "attention.html").is_file()
    kinds = {"encoder": ["encoder"], "decoder": ["decoder"], "encoder-decoder": ["encoder", "decoder", "cross"]}
    assert list(summary["kinds"]) == kinds[config.arch]
    assert all(k["heads"] == config.n_heads for k in summary["kinds"].values())
