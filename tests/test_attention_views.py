"""The explorer of ``trilogy.viz.show`` in headless Chromium: several views of several models in one document,
each checked against the weights the models compute. Head view: hover a query or a key, pin several queries
(their weights add up), overlay heads in colours, the mask drawn under the weights. Model view: click a
thumbnail to open it. Neuron view: the queries, keys, products and scores against ones recomputed here from the
model's parameters. Generation steps against the attention of each decoding step. Export as PNG and SVG.

``TRILOGY_SCREENSHOTS=1`` also saves a picture of each view into docs/images/ (as docs/attention.md shows).
"""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

import trilogy
from trilogy.viz import show
from trilogy.viz.explorer import page

from .explorer_helpers import IMAGES, PACKED, browser_page, embedded, needs_chromium, offline, word_tokenizer

pytestmark = needs_chromium
PALETTE = [(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28)]
TEXT, SOURCE, TARGET = "the cat sat on the mat", "the dog ran to a cat", "un chien"
VIEWS = ["gpt-head", "gpt-model", "t5-neuron", "t5-head", "llama-neuron", "bert-neuron", "gpt-steps", "t5-steps"]


def model(name: str) -> trilogy.TransformerModel:
    torch.manual_seed({"tiny-gpt2": 1, "tiny-t5": 2, "tiny-llama": 3, "tiny-bert": 4}[name])
    return trilogy.build(name, tokenization=trilogy.Tokenization(word_tokenizer())).eval()


@pytest.fixture(scope="module")
def models():
    return {name: model(f"tiny-{name}") for name in ("gpt2", "t5", "llama", "bert")}


@pytest.fixture(scope="module")
def document(models, tmp_path_factory):
    gpt, t5 = models["gpt2"], models["t5"]
    views = [show(gpt, TEXT), show(gpt, TEXT, view="model"), show(t5, SOURCE, target=TARGET, view="neuron"),
             show(t5, SOURCE, target=TARGET), show(models["llama"], TEXT, view="neuron"),
             show(models["bert"], TEXT, view="neuron"), show(gpt, "the cat", generate=4),
             show(t5, SOURCE, generate=3)]
    path = tmp_path_factory.mktemp("views") / "views.html"
    path.write_text(page("\n".join(view.html for view in views), "views"))
    return path, [embedded(view.html)[0] for view in views]


@pytest.fixture(scope="module")
def browser(document):
    path, _ = document
    with browser_page(path) as (opened, errors, requests):
        yield opened, errors, requests


def root(browser, view: str):
    return browser[0].locator("div.tri").nth(VIEWS.index(view))


def ids(tokens: list[str]) -> torch.Tensor:
    return torch.tensor([[word_tokenizer().token_to_id(t) for t in tokens]])


def run(m, source: list[str], target: list[int] | None = None):
    with torch.no_grad():
        if target is None:
            return m.run(ids(source), return_attention=True).attentions
        return m.run(ids(source), torch.tensor([target]), return_attention=True).attentions


def drawn_edges(view):
    return view.locator("svg.tri-lines line.tri-edge").evaluate_all(
        "es => es.map(e => [+e.dataset.h, +e.dataset.q, +e.dataset.k, +e.getAttribute('stroke-opacity'), "
        "e.getAttribute('stroke')])")


def blocks(view, side: str) -> dict[tuple[int, int], float]:
    cells = view.locator(f"rect.tri-bar-cell[data-side={side}]").evaluate_all(
        "rs => rs.map(r => [+r.dataset.h, +r.dataset.index, +r.dataset.value])")
    return {(h, i): value for h, i, value in cells}


def screenshot(view, name: str) -> None:
    if os.environ.get("TRILOGY_SCREENSHOTS"):
        view.screenshot(path=str(IMAGES / f"attention_{name}.png"))


def test_views_render_side_by_side_without_errors(browser, document):
    page_, errors, requests = browser
    roots = page_.locator("div.tri")
    assert roots.count() == len(VIEWS)
    assert len(set(roots.evaluate_all("rs => rs.map(r => r.id)"))) == len(VIEWS)
    assert roots.evaluate_all("rs => rs.map(r => r.dataset.view)") == [d["view"] for d in document[1]]
    assert not errors
    assert offline(requests), requests


def test_head_view_hover_query_and_key(browser, models):
    view = root(browser, "gpt-head")
    weights = run(models["gpt2"], TEXT.split())["decoder"][0][0]  # (H, T, T), layer 0
    view.locator("svg.tri-lines text.tri-query[data-index='3']").hover()
    edges = drawn_edges(view)
    assert {q for _, q, _, _, _ in edges} == {3}
    assert sorted((h, k) for h, _, k, _, _ in edges) == [(h, k) for h in range(4) for k in range(4)]  # causal
    for h, q, k, opacity, _ in edges:
        assert opacity == pytest.approx(float(weights[h, q, k]), abs=PACKED)
    shown = blocks(view, "k")
    assert shown == {(h, k): pytest.approx(float(weights[h, 3, k]), abs=PACKED) for h in range(4) for k in range(6)}
    # keys after the query are greyed: the mask does not let it attend to them
    assert view.locator("svg.tri-lines text.tri-key.tri-blocked").evaluate_all(
        "ts => ts.map(t => +t.dataset.index)") == [4, 5]
    view.locator("svg.tri-lines text.tri-key[data-index='1']").hover()
    assert {k for _, _, k, _, _ in drawn_edges(view)} == {1}
    assert blocks(view, "q") == {(h, q): pytest.approx(float(weights[h, q, 1]), abs=PACKED)
                                 for h in range(4) for q in range(6)}
    screenshot(view, "head")


def test_pinned_queries_add_up(browser, models):
    view = root(browser, "gpt-head")
    weights = run(models["gpt2"], TEXT.split())["decoder"][0][0]
    view.locator("svg.tri-lines text.tri-query[data-index='1']").click()
    view.locator("svg.tri-lines text.tri-query[data-index='4']").click()
    browser[0].mouse.move(1200, 5)  # away: the pins stay
    assert view.locator("svg.tri-lines text.tri-pinned").count() == 2
    assert {q for _, q, _, _, _ in drawn_edges(view)} == {1, 4}
    assert blocks(view, "k") == {(h, k): pytest.approx(float(weights[h, 1, k] + weights[h, 4, k]), abs=2 * PACKED)
                                 for h in range(4) for k in range(6)}
    assert '"cat" (1) + "the" (4)' in view.locator(".tri-status").inner_text()
    view.locator(".tri-clear").click()
    assert view.locator("svg.tri-lines text.tri-pinned").count() == 0


def test_heads_overlaid_in_colours_with_the_mask_under_them(browser, models):
    view = root(browser, "gpt-head")
    weights = run(models["gpt2"], TEXT.split())["decoder"][0][0]
    view.locator(".tri-no-heads").click()
    view.locator(".tri-head-btn[data-head='0']").click()
    view.locator(".tri-head-btn[data-head='2']").click()
    edges = drawn_edges(view)
    assert {h for h, *_ in edges} == {0, 2}
    assert len({colour for h, *_, colour in edges if h == 0} | {colour for h, *_, colour in edges if h == 2}) == 2
    assert len(edges) == 2 * 21  # every allowed (query, key) pair of 6 causal tokens, per head
    canvas = view.locator("canvas.tri-heatmap")
    cell, left, top = (int(canvas.get_attribute(f"data-{a}")) for a in ("cell", "left", "top"))

    def pixel(q, k):
        return canvas.evaluate(f"c => Array.from(c.getContext('2d').getImageData({left + cell * k + cell // 2}, "
                               f"{top + cell * q + cell // 2}, 1, 1).data.slice(0, 3))")

    assert pixel(1, 3) == [208, 208, 208]  # blocked: grey
    expected = [255.0, 255.0, 255.0]
    for h in (0, 2):
        w = round(float(weights[h, 4, 2]) * 255) / 255
        expected = [c * (1 - w) + PALETTE[h][i] * w for i, c in enumerate(expected)]
    assert pixel(4, 2) == pytest.approx(expected, abs=2)
    view.locator(".tri-all-heads").click()


def test_model_view_thumbnail_opens_the_head(browser, models):
    view = root(browser, "gpt-model")
    assert view.locator(".tri-thumb").count() == 2 * 4
    screenshot(view, "model")
    view.locator(".tri-thumb[data-layer='1'][data-head='2']").click()
    assert view.get_attribute("data-view") == "head"
    assert view.locator(".tri-layer").input_value() == "1"
    assert view.locator(".tri-head-btn.tri-on").all_inner_texts() == ["2"]
    weights = run(models["gpt2"], TEXT.split())["decoder"][1][0]
    for h, q, k, opacity, _ in drawn_edges(view):
        assert h == 2 and opacity == pytest.approx(float(weights[2, q, k]), abs=PACKED)


def layer0_queries_keys(m, tokens: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 0's self-attention queries and keys, computed here from the parameters: (H, T, D) each, the key
    heads repeated for grouped-query attention, rotary angles applied by hand (half-split layout)."""
    config = m.config
    stack = m.encoder if config.arch == "encoder-decoder" else m.stack
    layer = stack.layers[0]
    with torch.no_grad():
        x = m.embeddings(ids(tokens))[0]  # (T, C)
        h = layer.self_attn_norm(x) if config.norm_position == "pre" else x
        qkv = h @ layer.self_attn.qkv.weight.T
        if layer.self_attn.qkv.bias is not None:
            qkv = qkv + layer.self_attn.qkv.bias
    n, kv, d = config.n_heads, config.n_kv_heads, config.d_head
    q, k, _ = qkv.split([n * d, kv * d, kv * d], dim=-1)
    q, k = q.view(-1, n, d).transpose(0, 1), k.view(-1, kv, d).transpose(0, 1)  # (H, T, D), (K, T, D)
    if config.position == "rope":
        angles = torch.arange(len(tokens))[:, None] / config.rope_theta ** (torch.arange(0, d, 2) / d)  # (T, D/2)
        cos, sin = angles.cos(), angles.sin()

        def rotate(v):
            a, b = v[..., : d // 2], v[..., d // 2:]
            return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

        q, k = rotate(q), rotate(k)
    return q, k.repeat_interleave(n // kv, dim=0)


def neuron_rows(view) -> list[dict]:
    return view.locator("table.tri-neuron tr.tri-key").evaluate_all(
        "rs => rs.map(r => ({k: +r.dataset.k, dot: +r.dataset.dot, weight: +r.dataset.weight, bias: +r.dataset.bias,"
        " score: r.dataset.score}))")


def components(view) -> list[list[float]]:
    return view.locator("table.tri-detail tr.tri-component").evaluate_all(
        "rs => rs.map(r => Array.from(r.cells).slice(1).map(c => +c.textContent))")


@pytest.mark.parametrize("name, view_name, kind", [("gpt2", "gpt-model", "decoder"), ("llama", "llama-neuron", "decoder"),
                                                   ("bert", "bert-neuron", "encoder"), ("t5", "t5-neuron", "encoder")])
def test_neuron_view_numbers_are_the_models(browser, models, name, view_name, kind):
    m, view = models[name], root(browser, view_name)
    tokens = (SOURCE if name == "t5" else TEXT).split()
    view.locator(".tri-view-btn[data-view=neuron]").click()
    if name == "t5":
        view.locator(".tri-kind-btn[data-kind=encoder]").click()
    view.locator(".tri-layer").select_option("0")
    view.locator(".tri-head-btn[data-head='1']").click()
    view.locator(".tri-queries button[data-index='3']").click()
    view.locator("table.tri-neuron tr.tri-key[data-k='2']").click()
    q, k = layer0_queries_keys(m, tokens)  # (H, T, D)
    attention = run(m, tokens, [0, 5] if name == "t5" else None)[kind][0][0]  # (H, T, S)
    scale = m.config.scale if m.config.scale is not None else m.config.d_head ** -0.5
    rows = neuron_rows(view)
    causal = m.config.arch == "decoder"
    assert [r["k"] for r in rows] == list(range(len(tokens)))
    for r in rows:
        assert r["dot"] == pytest.approx(float(q[1, 3] @ k[1, r["k"]]), rel=1e-4, abs=1e-5)
        assert r["weight"] == pytest.approx(float(attention[1, 3, r["k"]]), abs=1e-5)
        assert (r["score"] == "-Infinity") == (causal and r["k"] > 3)
        if not causal:
            bias = m.encoder.relative_bias(len(tokens), len(tokens))[0, 1, 3, r["k"]].detach() if name == "t5" else 0.0
            assert r["bias"] == pytest.approx(float(bias), abs=1e-5)
            assert float(r["score"]) == pytest.approx(r["dot"] * scale + r["bias"], rel=1e-4, abs=1e-5)
    detail = torch.tensor(components(view))  # (D, 3): q[i], k[i], q[i] k[i] for key 2
    assert torch.allclose(detail[:, 0], q[1, 3], atol=1e-4)
    assert torch.allclose(detail[:, 1], k[1, 2], atol=1e-4)
    assert torch.allclose(detail[:, 2], q[1, 3] * k[1, 2], atol=1e-4)
    if name == "t5":
        screenshot(view, "neuron")


@pytest.mark.parametrize("kind", ["decoder", "cross"])
def test_neuron_view_t5_decoder_and_cross_softmax_to_the_models_weights(browser, models, document, kind):
    m, view = models["t5"], root(browser, "t5-neuron")
    view.locator(f".tri-kind-btn[data-kind={kind}]").click()
    view.locator(".tri-layer").select_option("1")
    view.locator(".tri-head-btn[data-head='3']").click()
    view.locator(".tri-queries button[data-index='1']").click()
    target = [m.config.decoder_start_token_id, *ids(TARGET.split())[0].tolist()]
    attention = run(m, SOURCE.split(), target)[kind][1][0]  # (H, T, S)
    rows = neuron_rows(view)
    assert [r["weight"] for r in rows] == pytest.approx(attention[3, 1].tolist(), abs=1e-5)
    if kind == "decoder":  # T5's decoder bias has the causal mask folded in
        assert [r["score"] == "-Infinity" for r in rows] == [False, False, True]


@pytest.mark.parametrize("view_name", ["gpt-steps", "t5-steps"])
def test_generation_steps_show_each_new_tokens_attention(browser, models, document, view_name):
    view, data = root(browser, view_name), document[1][VIEWS.index(view_name)]
    m = models["gpt2" if view_name == "gpt-steps" else "t5"]
    first, count = data["generation"]["first"], data["generation"]["count"]
    assert count >= 2
    view.locator(".tri-next").click()
    view.locator(".tri-next").click()  # step 2: the second generated token is the query
    position = first + 1
    label = view.locator(".tri-step-label").inner_text()
    assert label.startswith(f"2/{count}") and f"position {position}" in label
    kinds = ["decoder"] if view_name == "gpt-steps" else ["decoder", "cross"]
    for kind in kinds:
        if len(kinds) > 1:
            view.locator(f".tri-kind-btn[data-kind={kind}]").click()
        with torch.no_grad():  # what the model computed when it decoded that step: only the tokens so far
            if view_name == "gpt-steps":
                decoded = m.generate(ids("the cat".split()), max_new_tokens=4)  # (1, T)
                step = m.run(decoded[:, : position + 1], return_attention=True).attentions[kind][0][0]
            else:
                decoded = m.generate(ids(SOURCE.split()), max_new_tokens=3)  # (1, T), from the start token
                step = m.run(ids(SOURCE.split()), decoded[:, : position + 1],
                             return_attention=True).attentions[kind][0][0]
        keys = step.size(-1)
        assert view.locator("svg.tri-lines text.tri-key").count() == keys
        assert {q for _, q, _, _, _ in drawn_edges(view)} == {position}
        assert blocks(view, "k") == {(h, k): pytest.approx(float(step[h, -1, k]), abs=PACKED)
                                     for h in range(4) for k in range(keys)}
    if view_name == "gpt-steps":
        screenshot(view, "generation")


def test_export_png_and_svg(browser):
    view = root(browser, "t5-head")
    with browser[0].expect_download() as png:
        view.locator(".tri-png").click()
    assert png.value.suggested_filename == "attention-head-encoder-layer0.png"
    image = Image.open(png.value.path()).convert("RGB")
    stage = view.locator(".tri-stage").evaluate("s => [s.scrollWidth, s.scrollHeight]")
    assert list(image.size) == stage
    lines = view.locator("svg.tri-lines").bounding_box()
    left = view.locator(".tri-stage").bounding_box()
    crop = image.crop((int(lines["x"] - left["x"]), int(lines["y"] - left["y"]),
                       int(lines["x"] - left["x"] + lines["width"]), int(lines["y"] - left["y"] + lines["height"])))
    assert len(crop.getcolors(maxcolors=1 << 20)) > 20  # the SVG's lines and labels are in the picture, not a blank box
    with browser[0].expect_download() as picture:
        view.locator(".tri-svg").click()
    assert b"<svg" in open(picture.value.path(), "rb").read(200)
    view.locator(".tri-view-btn[data-view=model]").click()
    assert view.locator(".tri-svg").is_hidden()  # the model view is drawn on canvases only
    with browser[0].expect_download() as thumbnails:
        view.locator(".tri-png").click()
    assert open(thumbnails.value.path(), "rb").read(4) == b"\x89PNG"
    assert not browser[1]
