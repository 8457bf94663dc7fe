"""docs/notebooks/transformer_architectures.ipynb, executed end to end in a real Jupyter kernel (nbclient,
ipykernel): every cell runs, the seed's eight sections are there, ``trilogy.viz.show`` displays inline as
text/html for BERT, GPT, Llama and T5, and all the views, put in one page, run in headless Chromium side by
side without a script error or a network request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import trilogy
from trilogy.viz.explorer import page

from .explorer_helpers import browser_page, embedded, needs_chromium, offline

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "transformer_architectures.ipynb"
SECTIONS = ["1. Encoder-only", "2. Decoder-only", "3. Encoder-decoder", "4. Masked attention",
            "5. Architecture comparison", "6. Practical implementation", "7. Architecture decision guide",
            "8. Exercises"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(cell.get("outputs", []) == [] for cell in notebook.cells if cell.cell_type == "code")  # as committed
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
