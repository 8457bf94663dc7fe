"""``trilogy attention`` on a saved checkpoint with a tokenizer, and its page driven in headless Chromium
(Debian's ``chromium``, through Playwright, which never downloads a browser here): pick the kind, layer and
head, hover a token, and check what is drawn against the weights the model computes."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

import trilogy
from trilogy.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
    model = trilogy.build("tiny-t5")
    model.tokenizer = tokenizer()
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
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        '"http://www.w3.org/2000/svg"', "") and "https://" not in text
    data = json.loads(text.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert data["kinds"]["encoder"]["queries"] == ["the", "cat", "sat", "on", "the", "mat"]
    assert data["kinds"]["cross"]["keys"] == data["kinds"]["encoder"]["queries"]
    assert data["kinds"]["cross"]["queries"][1:] == ["le", "chat", "est", "assis"]
    for kind, layers in expected(checkpoint).items():
        for layer, weights in enumerate(layers):
            assert torch.allclose(torch.tensor(data["kinds"][kind]["layers"][layer]), weights, atol=1e-4)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_in_headless_chromium(checkpoint, written):
    from playwright.sync_api import sync_playwright

    weights = expected(checkpoint)
    requests = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(written.as_uri())
            assert page.locator(".kind-btn").count() == 3
            # cross-attention, layer 1, head 2
            page.locator(".kind-btn[data-kind=cross]").click()
            page.select_option("#layer", "1")
            page.locator(".head-btn[data-head='2']").click()
            assert page.locator(".head-btn.active").get_attribute("data-head") == "2"
            head = weights["cross"][1][2]  # (T, S)
            drawn = page.eval_on_selector_all(
                "#matrix rect.cell", "cells => cells.map(c => [+c.dataset.q, +c.dataset.k, +c.getAttribute('fill-opacity')])")
            assert len(drawn) == head.numel()
            for q, k, opacity in drawn:
                assert opacity == pytest.approx(float(head[q, k]), abs=1e-3)
            # hover the query "chat": only its lines stay, keys light up by weight, the status names the top key
            page.locator("#lines text.query[data-index='2']").hover()
            shown = page.eval_on_selector_all(
                "#lines line.edge", "es => es.filter(e => e.style.display !== 'none').map(e => +e.dataset.q)")
            assert shown == [2] * head.size(1)
            lit = page.eval_on_selector_all("#lines rect.key-bg", "rs => rs.map(r => +r.getAttribute('fill-opacity'))")
            assert lit == pytest.approx(head[2].tolist(), abs=1e-3)
            status = page.locator("#status")
            top = int(status.get_attribute("data-top"))  # ties are possible in a random model: compare weights
            assert float(head[2, top]) == pytest.approx(float(head[2].max()), abs=1e-3)
            assert '"chat"' in status.inner_text()
            # all heads at once, then click head 3's thumbnail
            page.locator(".head-btn[data-head='all']").click()
            assert page.locator("#grid .thumb").count() == weights["cross"][1].size(0)
            page.locator("#grid .thumb[data-head='3']").click()
            assert page.locator(".head-btn.active").get_attribute("data-head") == "3"
            first = page.locator("#matrix rect.cell[data-q='0'][data-k='0']").get_attribute("fill-opacity")
            assert float(first) == pytest.approx(float(weights["cross"][1][3, 0, 0]), abs=1e-3)
            # the encoder view has the source on both axes
            page.locator(".kind-btn[data-kind=encoder]").click()
            assert page.locator("#lines text.query").all_text_contents() == ["the", "cat", "sat", "on", "the", "mat"]
            assert not errors
        finally:
            browser.close()
    assert all(url.startswith("file://") for url in requests), requests


def test_heatmap_pngs_for_a_preset(tmp_path, capsys):
    code = main(["attention", "tiny-gpt2", "--text", "5 17 42 9", "--out", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["kinds"]["decoder"]["layers"] == 2
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["decoder_layer0.png", "decoder_layer1.png"]
    assert (tmp_path / "decoder_layer0.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args", [["tiny-gpt2", "--text", "hello"], ["nowhere", "--text", "1 2"],
                                  ["tiny-gpt2", "--text", "1 2", "--target", "3"]])
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
