"""The explorer's page in headless Chromium, where tests/test_attention_views.py does not go: the live widget
(its ES module, rendered with a stand-in for the widget model whose messages go to the widget's real Python
side), which opens on one head and asks the kernel for each layer, head or queries and keys picked; and the
logit-lens view of GPT-2, T5 and BERT against ``trilogy.viz.logit_lens``."""

from __future__ import annotations

import pytest
import torch

import trilogy
from trilogy.viz import logit_lens, show

from .explorer_helpers import (
    PACKED,
    browser_page,
    comm_stub,
    needs_chromium,
    offline,
    widget_page,
    word_tokenizer,
)

pytestmark = needs_chromium
pytest.importorskip("anywidget")
TEXT, SOURCE, TARGET = "the cat sat on the mat", "the dog ran to a cat", "un chien"


def model(name: str) -> trilogy.TransformerModel:
    torch.manual_seed({"tiny-gpt2": 1, "tiny-t5": 2, "tiny-bert": 4}[name])
    return trilogy.build(name, tokenization=trilogy.Tokenization(word_tokenizer())).eval()


def ids(text: str) -> torch.Tensor:
    return torch.tensor([[word_tokenizer().token_to_id(t) for t in text.split()]])


@pytest.fixture(scope="module")
def gpt():
    return model("tiny-gpt2")


@pytest.fixture(scope="module")
def lenses(gpt):
    """Three self-contained views opening on the lens, and the lens each shows, from ``logit_lens``."""
    t5, bert = model("tiny-t5"), model("tiny-bert")
    views = [show(gpt, TEXT, view="lens"), show(t5, SOURCE, target=TARGET, view="lens"),
             show(bert, TEXT, view="lens", lens_target="cat")]
    start = t5.config.decoder_start_token_id
    expected = [logit_lens(gpt, ids(TEXT)[:, :-1], ids(TEXT)[0, 1:]),
                logit_lens(t5, ids(SOURCE), ids(TARGET)[0],
                           decoder_input_ids=torch.cat([torch.tensor([[start]]), ids(TARGET)[:, :-1]], 1)),
                logit_lens(bert, ids(TEXT), word_tokenizer().token_to_id("cat"))]
    return views, expected


@pytest.fixture(scope="module")
def browser(gpt, lenses, tmp_path_factory):
    """One page: the live view (in ``#widget``) and the three lens views after it. Setting ``kernel["fail"]``
    makes the stand-in kernel answer with that error."""
    view = show(gpt, TEXT, live=True, lens=True)
    ask, kernel = comm_stub(view.widget), {"fail": None}

    def answer(request):
        return {"error": kernel["fail"], "request": request} if kernel["fail"] else ask(request)

    after = "\n".join(lens_view.html for lens_view in lenses[0])
    path = widget_page(tmp_path_factory.mktemp("live") / "live.html", view.widget._esm, view.widget.data, after)
    with browser_page(path, {"kernel": answer}) as (opened, errors, requests):
        opened.wait_for_selector("#widget div.tri .tri-stage > *")
        yield opened, errors, requests, kernel


@pytest.fixture
def live(browser):
    return browser[0].locator("#widget div.tri")


def attention(gpt, layer: int) -> torch.Tensor:
    with torch.no_grad():
        return gpt.run(ids(TEXT), return_attention=True).attentions["decoder"][layer][0]  # (H, T, T)


def sent(widget) -> list[dict]:
    return widget.evaluate("_ => window.sentRequests")


def answered(widget) -> None:
    """Wait until the live view has drawn what it asked for."""
    widget.page.wait_for_function(
        "() => !document.querySelector('#widget .tri-status').textContent.startsWith('Asking')")


def check_edges(widget, weights: torch.Tensor, heads: list[int]) -> None:
    """The head view draws the lines of ``heads`` and no other, each as opaque as its weight in ``weights``."""
    drawn = widget.locator("svg.tri-lines line.tri-edge").evaluate_all(
        "es => es.map(e => [+e.dataset.h, +e.dataset.q, +e.dataset.k, +e.getAttribute('stroke-opacity')])")
    assert {h for h, _, _, _ in drawn} == set(heads)
    assert len(drawn) >= len(heads) * weights.size(1)  # each query attends somewhere
    for h, q, k, opacity in drawn:
        assert opacity == pytest.approx(float(weights[h, q, k]), abs=PACKED)


def test_the_live_view_opens_on_one_head_without_asking(live, gpt):
    widget = live
    assert widget.get_attribute("data-view") == "head"
    assert widget.locator(".tri-head-btn.tri-on").evaluate_all("bs => bs.map(b => +b.dataset.head)") == [0]
    check_edges(widget, attention(gpt, 0), [0])
    assert sent(widget) == []


def test_picking_a_layer_asks_for_it_and_redraws(live, gpt):
    widget = live
    widget.locator(".tri-layer").select_option("1")
    answered(widget)
    assert sent(widget) == [{"kind": "decoder", "layer": 1, "head": 0, "part": "weights"}]
    check_edges(widget, attention(gpt, 1), [0])


def test_picking_a_head_asks_for_it(live, gpt):
    widget = live
    widget.locator(".tri-head-btn[data-head='2']").click()
    answered(widget)
    assert sent(widget)[-1] == {"kind": "decoder", "layer": 1, "head": 2, "part": "weights"}
    check_edges(widget, attention(gpt, 1), [0, 2])
    widget.locator(".tri-head-btn[data-head='0']").click()  # a head it has: no request
    assert len(sent(widget)) == 2
    check_edges(widget, attention(gpt, 1), [2])


def test_the_neuron_view_asks_for_queries_and_keys(live, gpt):
    widget = live
    widget.locator(".tri-view-btn[data-view='neuron']").click()
    answered(widget)
    assert sent(widget)[-1] == {"kind": "decoder", "layer": 1, "head": 0, "part": "vectors"}
    query = int(widget.locator(".tri-status").get_attribute("data-query"))
    drawn = widget.locator("tr.tri-key").evaluate_all("rs => rs.map(r => [+r.dataset.k, +r.dataset.weight])")
    weights = attention(gpt, 1)[0, query]
    assert [tuple(row) for row in drawn] == [(k, pytest.approx(float(weights[k]), abs=1e-5)) for k in range(len(drawn))]


def test_the_model_view_asks_for_every_other_head(live, gpt):
    widget = live
    widget.locator(".tri-view-btn[data-view='model']").click()
    answered(widget)
    weights = {(r["layer"], r["head"]) for r in sent(widget) if r["part"] == "weights"}
    assert weights == {(layer, head) for layer in range(2) for head in range(4)} - {(0, 0)}
    assert widget.locator(".tri-thumb").count() == 8 and widget.locator(".tri-thumb.tri-waiting").count() == 0


def test_a_failed_request_says_so(live, browser):
    widget, kernel = live, browser[3]
    kernel["fail"] = "the kernel has stopped"
    widget.locator(".tri-view-btn[data-view='neuron']").click()
    widget.locator(".tri-head-btn[data-head='3']").click()
    widget.page.wait_for_function(
        "() => document.querySelector('#widget .tri-status').textContent.includes('stopped')")
    assert widget.locator(".tri-status").text_content() == "The kernel could not answer: the kernel has stopped"
    kernel["fail"] = None


def test_the_live_view_has_the_lens(live):
    widget = live
    widget.locator(".tri-view-btn[data-view='lens']").click()
    assert widget.locator("td.tri-lens-cell").count() == 3 * (len(TEXT.split()) - 1)  # embeddings + 2 layers


def test_lens_cells_are_the_logit_lens(browser, lenses):
    roots = browser[0].locator("div.tri")
    assert roots.evaluate_all("rs => rs.map(r => r.dataset.view)")[1:] == ["lens", "lens", "lens"]
    for i, lens in enumerate(lenses[1]):
        root = roots.nth(1 + i)
        cells = root.locator("td.tri-lens-cell").evaluate_all(
            "cs => cs.map(c => [+c.dataset.row, +c.dataset.position, c.textContent, +c.dataset.target])")
        n_rows, n_positions = lens.target_probabilities.shape
        assert len(cells) == n_rows * n_positions
        for row, position, top, target in cells:
            assert top == lens.top_labels[row][position]
            assert target == pytest.approx(float(lens.target_probabilities[row, position]), rel=1e-6, abs=1e-9)
        headers = root.locator("th.tri-lens-position").all_text_contents()
        assert headers == [f"{p}\n\u2192 {t}" for p, t in zip(lens.positions, lens.targets, strict=True)]


def test_lens_cell_click_and_token_window(browser, lenses):
    root, lens = browser[0].locator("div.tri").nth(1), lenses[1][0]
    root.locator("td.tri-lens-cell[data-row='2'][data-position='1']").click()
    status = root.locator(".tri-status").text_content()
    assert status.startswith(f'{lens.rows[2]}, position 1 ("{lens.positions[1]}"): top "{lens.top_labels[2][1]}"')
    assert f'target "{lens.targets[1]}" {float(lens.target_probabilities[2, 1]):.3f}' in status
    root.locator(".tri-to").fill("2")
    root.locator(".tri-to").dispatch_event("change")
    assert root.locator("th.tri-lens-position").evaluate_all("hs => hs.map(h => +h.dataset.position)") == [0, 1, 2]
    assert root.locator(".tri-layer").is_hidden() and root.locator(".tri-heads").is_hidden()
    root.locator(".tri-view-btn[data-view='head']").click()  # the other views are there too
    assert root.locator("svg.tri-lines").count() == 1


def test_the_page_ran_without_errors_or_network(browser):
    _, errors, requests, _ = browser
    assert not errors
    assert offline(requests), requests
