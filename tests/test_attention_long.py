"""Long inputs in the explorer: past a few hundred tokens the head view draws on a canvas (and still answers
the pointer), the token window brings back the SVG for a stretch of the text, and the model view draws every
thumbnail. The slow test opens a 512-token view of a BERT-base-sized model."""

from __future__ import annotations

import time

import pytest
import torch

import trilogy
from trilogy.viz import show
from trilogy.viz.explorer import page

from .explorer_helpers import PACKED, browser_page, needs_chromium

pytestmark = needs_chromium


def open_view(tmp_path, view):
    path = tmp_path / "long.html"
    path.write_text(page(view.html, "long"))
    return browser_page(path)


def test_four_hundred_tokens(tmp_path):
    torch.manual_seed(0)
    bert = trilogy.build("tiny-bert", max_seq_len=512).eval()
    tokens = list(range(3, 403))
    with torch.no_grad():
        expected = bert.run(torch.tensor([tokens]), return_attention=True).attentions["encoder"][0][0]  # (H, T, T)
    with open_view(tmp_path, show(bert, tokens)) as (page_, errors, _):
        view = page_.locator("div.tri")
        assert view.locator("svg.tri-lines").count() == 0 and view.locator("canvas.tri-lines-canvas").count() == 1
        lines = view.locator("canvas.tri-lines-canvas")
        box = lines.bounding_box()
        row = (box["height"] - 36 - 10) / 400  # the canvas' rows, below its 36-pixel header
        page_.mouse.move(box["x"] + 150, box["y"] + 36 + row * 200.5)
        status = view.locator(".tri-status").inner_text()
        assert status.startswith('"202" (199) attends most to') or status.startswith('"203" (200) attends most to')
        # the window 100..119: twenty tokens on each side, drawn as SVG again
        view.locator(".tri-from").fill("100")
        view.locator(".tri-from").dispatch_event("change")
        view.locator(".tri-to").fill("119")
        view.locator(".tri-to").dispatch_event("change")
        queries = view.locator("svg.tri-lines text.tri-query").evaluate_all("ts => ts.map(t => +t.dataset.index)")
        assert queries == list(range(100, 120))
        view.locator("svg.tri-lines text.tri-query[data-index='110']").hover()
        edges = view.locator("svg.tri-lines line.tri-edge[data-h='0']").evaluate_all(
            "es => es.map(e => [+e.dataset.k, +e.getAttribute('stroke-opacity')])")
        assert [k for k, _ in edges] == [k for k in range(100, 120) if round(float(expected[0, 110, k]) * 255) > 0]
        for k, opacity in edges:
            assert opacity == pytest.approx(float(expected[0, 110, k]), abs=PACKED)
        view.locator(".tri-view-btn[data-view=model]").click()
        assert view.locator("canvas.tri-thumb-canvas").count() == 2 * 4
        assert not errors


@pytest.mark.slow
def test_bert_base_sized_512_tokens_stays_usable(tmp_path):
    torch.manual_seed(0)
    bert = trilogy.build("bert-base-uncased").eval()
    view = show(bert, list(range(1000, 1512)), layers=[0, 11])
    assert len(view.html) < 20e6  # two layers x 12 heads x 512 x 512 weights, one byte each, plus q and k
    with open_view(tmp_path, view) as (page_, errors, _):
        start = time.perf_counter()
        root = page_.locator("div.tri")
        root.locator(".tri-view-btn[data-view=model]").click()
        assert root.locator("canvas.tri-thumb-canvas").count() == 2 * 12
        root.locator(".tri-thumb[data-layer='11'][data-head='5']").click()
        box = root.locator("canvas.tri-lines-canvas").bounding_box()
        page_.mouse.move(box["x"] + 150, box["y"] + box["height"] / 2)
        assert "attends most to" in root.locator(".tri-status").inner_text()
        root.locator(".tri-view-btn[data-view=neuron]").click()
        assert root.locator("table.tri-neuron tr.tri-key").count() == 512
        assert time.perf_counter() - start < 30
        assert not errors
