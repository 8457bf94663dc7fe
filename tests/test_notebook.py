"""The seed notebook's model cells run unchanged against trilogy, with the behaviour they claim.

The cells are read from the notebook itself. Cells that define the notebook's classes and exercises are replaced
by ``from trilogy import ...``; every cell that builds or runs a model is executed as written.
"""

import re
import sys
import types
from pathlib import Path

import pytest
import torch

import trilogy

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "seed" / "transformer_architectures_notebook.txt"
PROVIDED = ("class EncoderOnlyTransformer", "class DecoderOnlyTransformer", "class EncoderDecoderTransformer",
            "class PositionalEncoding", "class MLMHead")
ANALYSIS = ("def visualize_attention_patterns", "def compare_architectures", "def practical_implementation_example",
            "def architecture_decision_guide")

def notebook_cells() -> list[str]:
    text = NOTEBOOK.read_text()
    chunks = re.split(r"^In \[None\]:\n", text, flags=re.M)[1:]
    # a code cell ends where the next markdown heading starts
    return [re.split(r"^## ", chunk, flags=re.M)[0] for chunk in chunks]


def notebook_definition(name: str) -> dict:
    """Execute the notebook's own definition of ``name`` (the reference implementation) in a fresh namespace."""
    cell = next(c for c in notebook_cells() if f"def {name}" in c)
    source = cell[cell.index(f"def {name}"):].split("\nprint(")[0]
    namespace = {"torch": torch}
    exec(source, namespace)
    return namespace


@pytest.fixture(scope="module")
def namespace():
    if "seaborn" not in sys.modules:  # the import cell imports seaborn for the picture cell, not for the models
        try:
            import seaborn  # noqa: F401
        except ImportError:
            sys.modules["seaborn"] = types.ModuleType("seaborn")
    ns = {}
    exec("from trilogy import EncoderOnlyTransformer, DecoderOnlyTransformer, EncoderDecoderTransformer, "
         "PositionalEncoding, MLMHead, generate_text", ns)
    for cell in notebook_cells():
        if cell.lstrip().startswith(PROVIDED) or "class MLMHead" in cell or any(a in cell for a in ANALYSIS):
            continue
        exec(cell, ns)
    return ns


def test_every_model_cell_ran(namespace):
    assert isinstance(namespace["encoder_model"], trilogy.EncoderOnlyTransformer)
    assert isinstance(namespace["decoder_model"], trilogy.DecoderOnlyTransformer)
    assert isinstance(namespace["enc_dec_model"], trilogy.EncoderDecoderTransformer)
    assert namespace["output"].shape == (2, 10, 256)
    assert namespace["logits"].shape == (2, 10, 1000)


def test_encoder_cell_model_is_bidirectional(namespace):
    model = namespace["encoder_model"].eval()
    ids = namespace["input_ids"].clone()
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 1000
    assert (model(ids)[:, 0] - model(changed)[:, 0]).abs().max() > 1e-5


def test_decoder_cell_model_is_causal(namespace):
    model = namespace["decoder_model"].eval()
    ids = namespace["input_ids"].clone()
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 1000
    torch.testing.assert_close(model(ids)[:, :-1], model(changed)[:, :-1])


def test_encoder_decoder_cell_model_cross_attends_and_masks_source_padding(namespace):
    model = namespace["enc_dec_model"].eval()
    src, tgt = namespace["src_ids"], namespace["tgt_ids"]
    changed = src.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 1000
    assert (model(src, tgt) - model(changed, tgt)).abs().max() > 1e-5
    src_mask = torch.zeros_like(src, dtype=torch.bool)
    src_mask[:, -1] = True  # the notebook's key-padding convention: True = padding
    torch.testing.assert_close(model(src, tgt, src_mask=src_mask), model(changed, tgt, src_mask=src_mask))
    causal = torch.triu(torch.ones(tgt.size(1), tgt.size(1)), diagonal=1).bool()
    torch.testing.assert_close(model(src, tgt, tgt_mask=causal), model(src, tgt))


def test_mlm_head_exercise(namespace):
    head = namespace["MLMHead"](256, 1000)
    assert head(namespace["output"]).shape == (2, 10, 1000)


def test_generate_text_matches_the_notebooks_own_loop(namespace):
    reference = notebook_definition("generate_text")["generate_text"]
    model = namespace["decoder_model"]
    prompt = namespace["input_ids"][:, :4]
    ours = namespace["generate_text"](model, prompt, max_length=16)
    assert ours.shape == (2, 16)
    assert torch.equal(ours, reference(model, prompt, max_length=16))
    assert torch.equal(namespace["generate_text"](model, prompt, max_length=12, temperature=0.7),
                       reference(model, prompt, max_length=12, temperature=0.7))


def test_positional_encoding_matches_the_notebooks():
    reference = PositionalEncodingReference(32, 50)
    ours = trilogy.PositionalEncoding(32, 50)
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(ours(x), reference(x))


class PositionalEncodingReference(torch.nn.Module):
    """The notebook's cell, executed from the notebook text."""

    def __new__(cls, *args):
        cell = next(c for c in notebook_cells() if c.lstrip().startswith("class PositionalEncoding"))
        ns = {"nn": torch.nn, "torch": torch, "math": __import__("math")}
        exec(cell, ns)
        return ns["PositionalEncoding"](*args)
