"""save_pretrained -> from_pretrained gives back the same model, in the Hugging Face layout for every preset
that has an equivalent and in trilogy's own format for the rest."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import trilogy
from trilogy import ModelConfig

from .convert_helpers import perturb


def sample_inputs(model: trilogy.TransformerModel, batch: int = 2, length: int = 6) -> dict:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)
    if model.config.arch == "encoder-decoder":
        return dict(input_ids=ids, decoder_input_ids=ids[:, :4])
    return dict(input_ids=ids)


@pytest.mark.parametrize("preset,model_type", [
    ("tiny-gpt2", "gpt2"), ("tiny-llama", "llama"), ("tiny-bert", "bert"), ("tiny-t5", "t5"),
])
def test_presets_round_trip_in_hf_layout(tmp_path, preset, model_type):
    model = trilogy.build(preset).eval()
    perturb(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an HF-equivalent preset must not fall back to the native format
        model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == model_type
    loaded = trilogy.from_pretrained(tmp_path)
    inputs = sample_inputs(model)
    torch.testing.assert_close(loaded(**inputs), model(**inputs), rtol=0, atol=0)
    assert type(loaded) is type(model)


def test_model_without_hf_equivalent_saves_natively_with_a_warning(tmp_path):
    model = trilogy.DecoderOnlyTransformer(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                                           max_seq_len=32).eval()  # the notebook's: sinusoidal positions
    perturb(model)
    with pytest.warns(UserWarning, match="transformers cannot"):
        model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "trilogy"
    loaded = trilogy.from_pretrained(tmp_path)
    assert loaded.config == model.config
    inputs = sample_inputs(model)
    torch.testing.assert_close(loaded(**inputs), model(**inputs), rtol=0, atol=0)


def test_format_hf_refuses_a_model_without_equivalent(tmp_path):
    model = trilogy.build(ModelConfig.from_preset("tiny-gpt2", position="rope"))
    with pytest.raises(trilogy.CheckpointError, match="position='rope'"):
        model.save_pretrained(tmp_path, format="hf")
    assert not (tmp_path / "config.json").exists()
