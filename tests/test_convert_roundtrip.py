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
    model = trilogy.build(ModelConfig.from_preset("tiny-gpt2", position="sinusoidal"))
    with pytest.raises(trilogy.CheckpointError, match="position='sinusoidal'"):
        model.save_pretrained(tmp_path, format="hf")
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("preset", [p for p in trilogy.PRESETS if not p.startswith("tiny-")])
def test_named_presets_have_a_transformers_equivalent(preset):
    from trilogy.convert.hf import config_to_hf

    expected = {"encoder": "BertModel", "decoder": "GPT2LMHeadModel", "encoder-decoder": "T5ForConditionalGeneration"}
    config = ModelConfig.from_preset(preset)
    hf_config, _, architecture = config_to_hf(config)
    assert architecture == expected[config.arch]
    if preset.startswith("t5"):  # v1.0: tied and scaled; Flan: gated-GELU, untied, unscaled
        assert hf_config["tie_word_embeddings"] and hf_config["scale_decoder_outputs"]
    if preset.startswith("flan"):
        assert hf_config["feed_forward_proj"] == "gated-gelu" and not hf_config["tie_word_embeddings"]


def test_stored_dtype_is_cast_to_float32_unless_asked(tmp_path):
    model = trilogy.build("tiny-gpt2").eval()
    perturb(model)
    model.half().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float16"
    loaded = trilogy.from_pretrained(tmp_path)
    assert loaded.embeddings.tokens.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.embeddings.tokens.weight, model.embeddings.tokens.weight.float())
    assert trilogy.from_pretrained(tmp_path, dtype=torch.bfloat16).embeddings.tokens.weight.dtype == torch.bfloat16


def test_bert_without_pooler_and_head_has_no_equivalent(tmp_path):
    model = trilogy.build("tiny-bert", head="none").eval()
    with pytest.warns(UserWarning, match="as BertModel: pooler=False"):
        model.save_pretrained(tmp_path)
    inputs = sample_inputs(model)
    torch.testing.assert_close(trilogy.from_pretrained(tmp_path)(**inputs), model(**inputs), rtol=0, atol=0)
