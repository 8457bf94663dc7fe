"""docs/notebooks/transformer_architectures.ipynb, executed end to end in a real Jupyter kernel (nbclient,
ipykernel): every cell runs, the seed's eight sections and "Look inside" are there, ``trilogy.viz.show``
displays inline as text/html for BERT, GPT, Llama and T5, and all the views, put in one page, run in headless
Chromium side by side without a script error or a network request. What the "Look inside" section says about
its pictures is checked on the kernel's own objects, by a cell the test appends (``LOOK_INSIDE_CHECKS``)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest

import trilogy
from trilogy.viz.explorer import page

from .explorer_helpers import browser_page, embedded, needs_chromium, offline

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "transformer_architectures.ipynb"
SECTIONS = ["1. Encoder-only", "2. Decoder-only", "3. Encoder-decoder", "4. Masked attention",
            "5. Architecture comparison", "6. Practical implementation", "7. Architecture decision guide",
            "8. Exercises", "9. Look inside"]
LOOK_INSIDE = "## 9. Look inside"
#: run in the kernel after the notebook: section 9's claims, recomputed from the models and results it left
LOOK_INSIDE_CHECKS = """
import json as _json


def _lens_check(model, lens, inputs, targets, words):
    with torch.no_grad():  # the model's own output distribution, (T, V), by its forward pass alone
        own = model.run(*inputs).logits.float().softmax(-1)[0]
    top = lens.top_tokens[-1]
    return {"own_top": torch.equal(own.argmax(-1), top),
            "largest_difference": float((own[range(len(targets)), targets] - lens.target_probabilities[-1]).abs().max()),
            "right": float((top == targets)[words].float().mean())}


with torch.no_grad():
    _clean_logits, _whole = gpt(clean), []
    for _name in clean_streams:
        with gpt.hooks([(_name, lambda _activation, name: clean_streams[name])]):
            _whole.append(torch.equal(gpt(corrupted), _clean_logits))
_same = (clean == corrupted)[0]
print(_json.dumps({
    "gpt": _lens_check(gpt, gpt_lens, (gpt_input[:, :-1],), gpt_input[0, 1:], slice(None)),
    "bert": _lens_check(bert, bert_lens, (bert_masked,), bert_input[0], slice(1, -1)),
    "t5": _lens_check(t5, t5_lens, (t5_source, t5_decoder_input), t5_target[0], slice(None)),
    "stream": {"clean": stream.clean, "corrupted": stream.corrupted, "same_words": int(_same.sum()),
               "same_words_at_layer_0": stream.values[0, _same].tolist(), "whole_stream_restores": _whole},
    "cross": {"clean": cross.clean, "corrupted": cross.corrupted, "every_head": every_head,
              "best_head": float(cross.values.max())},
}))
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(cell.get("outputs", []) == [] for cell in notebook.cells if cell.cell_type == "code")  # as committed
    notebook.cells.append(nbformat.v4.new_code_cell(LOOK_INSIDE_CHECKS))
    src = str(Path(trilogy.__file__).resolve().parents[1])  # the kernel imports this checkout's trilogy
    env = {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path_factory.mktemp("notebook"))}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    return notebook


def html_outputs(notebook) -> list[str]:
    return [output["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "text/html" in output.get("data", {})]


def test_every_section_runs_in_a_kernel(executed):
    headings = [cell.source for cell in executed.cells if cell.cell_type == "markdown"]
    for section in SECTIONS:
        assert any(f"## {section}" in heading for heading in headings), section
    for cell in executed.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.source
    text = "".join(o.get("text", "") for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "Encoder-only output shape: (2, 10, 64)" in text and "Exercise implementations completed!" in text


def section_cells(notebook, heading: str) -> list:
    """The cells from the markdown cell with ``heading`` to the next ``## `` heading (or the end)."""
    start = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"
                 and cell.source.startswith(heading))
    end = next((i for i in range(start + 1, len(notebook.cells)) if notebook.cells[i].cell_type == "markdown"
                and notebook.cells[i].source.startswith("## ")), len(notebook.cells))
    return notebook.cells[start:end]


def printed(cell) -> str:
    """What a code cell printed (nothing for a markdown cell)."""
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output["output_type"] == "stream")


def test_look_inside_draws_the_lenses_and_the_patching_inline(executed):
    pictures = [base64.b64decode(output["data"]["image/png"]) for cell in section_cells(executed, LOOK_INSIDE)
                if cell.cell_type == "code" for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 5  # three lenses, the residual stream's patching, the cross-attention heads'
    assert all(picture.startswith(b"\x89PNG") and len(picture) > 10_000 for picture in pictures)


def test_look_inside_claims_hold_for_the_run(executed):
    report = json.loads(printed(executed.cells[-1]))
    for family in ("gpt", "bert", "t5"):  # "the top row is the model's output itself"; "nearly by heart"
        assert report[family]["own_top"] and report[family]["largest_difference"] < 1e-6, family
        assert report[family]["right"] >= 0.75, family
    stream = report["stream"]  # positive on the clean input, negative on the corrupted one
    assert stream["clean"] > 0 > stream["corrupted"]
    assert stream["same_words"] == 3  # "the last three"
    assert stream["same_words_at_layer_0"] == [stream["corrupted"]] * 3  # change nothing, to the bit
    assert stream["whole_stream_restores"] == [True, True]  # the clean logits, to the bit, at both layers
    cell = next(cell for cell in section_cells(executed, LOOK_INSIDE) if "taken whole" in printed(cell))
    clean = re.search(r"clean (\S+),", printed(cell)).group(1)
    assert re.findall(r"taken whole from the clean run: (\S+)", printed(cell)) == [clean, clean]
    cross = report["cross"]
    assert cross["clean"] > 0 > cross["corrupted"]
    assert cross["every_head"] == cross["clean"]  # every cross-attention head at once: exactly the clean metric
    assert cross["best_head"] < (cross["clean"] + cross["corrupted"]) / 2  # no head alone goes half of the way


def test_show_displays_inline_for_each_family(executed):
    views = [data for html in html_outputs(executed) for data in embedded(html)]
    kinds = [list(data["kinds"]) for data in views]
    assert ["encoder"] in kinds and ["decoder"] in kinds and ["encoder", "decoder", "cross"] in kinds
    names = " ".join(data["model"] for data in views)
    assert all(name in names for name in ("encoder-only", "decoder-only", "tiny-t5", "tiny-llama", "trained"))
    assert sorted({data["view"] for data in views}) == ["head", "model", "neuron"]
    assert any(data["generation"] for data in views)


@needs_chromium
def test_the_notebooks_views_run_side_by_side(executed, tmp_path):
    outputs = html_outputs(executed)
    path = tmp_path / "outputs.html"
    path.write_text(page("\n".join(outputs), "notebook outputs"))
    with browser_page(path) as (opened, errors, requests):
        roots = opened.locator("div.tri")
        assert roots.count() == len([d for html in outputs for d in embedded(html)]) >= 5
        assert roots.evaluate_all("rs => rs.every(r => r.querySelector('.tri-stage').childElementCount > 0)")
        assert not errors
    assert offline(requests), requests
