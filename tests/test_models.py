"""The three families: behaviour that defines them (bidirectional, causal, cross-attention, padding), sizes,
config round trip."""

import json

import pytest
import torch

import trilogy
from trilogy import ModelConfig
from trilogy.models import build_model

from .conftest import TINY, tiny

OFFICIAL_PARAMS = {
    "bert-base-uncased": 109_482_240,
    "bert-large-uncased": 335_141_888,
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "t5-small": 60_506_624,
    "t5-base": 222_903_552,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_preset_parameter_counts_equal_the_official_ones(name):
    with torch.device("meta"):
        model = trilogy.build(name)
    assert model.num_parameters() == OFFICIAL_PARAMS[name]


def test_tiny_presets_are_a_few_hundred_thousand_parameters():
    for name in TINY:
        assert 100_000 <= tiny(name).num_parameters() <= 500_000, name


def test_flan_t5_small_is_gated_and_untied():
    with torch.device("meta"):
        model = trilogy.build("flan-t5-small")
    assert model.lm_head.proj.weight is not model.embeddings.tokens.weight
    assert type(model.decoder.layers[0].mlp).__name__ == "GatedMLP"


def run(model, ids, mask=None, decoder_ids=None):
    if model.config.arch == "encoder-decoder":
        return model(ids, decoder_ids if decoder_ids is not None else ids, attention_mask=mask)
    return model(ids, attention_mask=mask)


def test_decoder_is_causal_by_perturbation():
    for name in ["tiny-gpt2", "tiny-llama"]:
        model = tiny(name)
        ids = torch.randint(0, 1000, (2, 12))
        changed = ids.clone()
        changed[:, 7] = (changed[:, 7] + 1) % 1000
        a, b = model(ids), model(changed)
        torch.testing.assert_close(a[:, :7], b[:, :7])
        assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-4


def test_encoder_decoder_decoder_is_causal_and_cross_attends():
    model = tiny("tiny-t5")
    src, tgt = torch.randint(0, 1000, (2, 9)), torch.randint(0, 1000, (2, 6))
    tgt2 = tgt.clone()
    tgt2[:, 4] += 1
    a, b = model(src, tgt), model(src, tgt2)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-4
    src2 = src.clone()
    src2[:, -1] += 1  # the last source token is visible to every target position
    assert (model(src2, tgt) - a).abs().amax(dim=-1).min() > 1e-6


def test_encoder_is_bidirectional():
    model = tiny("tiny-bert")
    ids = torch.randint(5, 1000, (2, 10))
    changed = ids.clone()
    changed[:, -1] += 1
    assert (model(ids)[:, 0] - model(changed)[:, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("name", TINY)
def test_padding_invariance(name):
    """Changing padded tokens changes no real position's output."""
    model = tiny(name)
    ids = torch.randint(3, 1000, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 6:] = 0
    changed = ids.clone()
    changed[0, 6:] = torch.randint(3, 1000, (4,))
    a, b = run(model, ids, mask), run(model, changed, mask)
    torch.testing.assert_close(a[0, :6], b[0, :6])
    torch.testing.assert_close(a[1], b[1])


def test_padding_gives_the_same_outputs_as_the_unpadded_sequence():
    for name in TINY:
        model = tiny(name)
        ids = torch.randint(3, 1000, (1, 7))
        padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
        mask = torch.tensor([[1] * 7 + [0] * 3])
        torch.testing.assert_close(run(model, padded, mask)[:, :7], run(model, ids), atol=1e-5, rtol=1e-4)


def test_left_padded_decoder_matches_unpadded():
    """Positions follow the attention mask, so a left-padded prompt gives the unpadded logits."""
    for name in ["tiny-gpt2", "tiny-llama"]:
        model = tiny(name)
        ids = torch.randint(3, 1000, (1, 6))
        padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], dim=1)
        mask = torch.tensor([[0] * 4 + [1] * 6])
        torch.testing.assert_close(model(padded, attention_mask=mask)[:, 4:], model(ids), atol=1e-5, rtol=1e-4)


def test_cross_attention_ignores_padded_source():
    model = tiny("tiny-t5")
    src, tgt = torch.randint(3, 1000, (2, 8)), torch.randint(3, 1000, (2, 5))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[:, 5:] = 0
    changed = src.clone()
    changed[:, 5:] = torch.randint(3, 1000, (2, 3))
    torch.testing.assert_close(model(src, tgt, attention_mask=mask), model(changed, tgt, attention_mask=mask))
    # and the notebook's key-padding form (True = padding) means the same thing
    torch.testing.assert_close(model(src, tgt, src_mask=mask == 0), model(src, tgt, attention_mask=mask))


def test_cross_attention_weights_are_zero_on_padded_source():
    model = tiny("tiny-t5")
    src, tgt = torch.randint(3, 1000, (2, 8)), torch.randint(3, 1000, (2, 5))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 4:] = 0
    out = model.run(src, tgt, attention_mask=mask, return_attention=True)
    for weights in out.attentions["cross"]:
        assert weights[1, :, :, 4:].abs().max() == 0
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


@pytest.mark.parametrize("name", TINY)
def test_explicit_attention_path_matches_sdpa(name):
    model = tiny(name)
    ids = torch.randint(3, 1000, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 5:] = 0
    args = (ids, ids) if model.config.arch == "encoder-decoder" else (ids,)
    fast = model.run(*args, attention_mask=mask)
    slow = model.run(*args, attention_mask=mask, return_attention=True)
    real = mask.bool()
    torch.testing.assert_close(fast.logits[real], slow.logits[real], atol=1e-5, rtol=1e-4)


def test_attention_weights_are_causal_for_decoders():
    out = tiny("tiny-gpt2").run(torch.randint(0, 1000, (1, 6)), return_attention=True)
    for weights in out.attentions["decoder"]:
        assert weights.shape == (1, 4, 6, 6)
        assert torch.triu(weights[0], diagonal=1).abs().max() == 0


def test_config_json_round_trip(tmp_path):
    for name in trilogy.PRESETS:
        config = ModelConfig.from_preset(name)
        assert ModelConfig.from_json(config.to_json()) == config
        path = tmp_path / f"{name}.json"
        config.to_json(path)
        assert ModelConfig.from_json(path) == config
        assert json.loads(path.read_text())["arch"] == config.arch


def test_config_replace_recomputes_derived_sizes():
    config = ModelConfig.from_preset("tiny-gpt2").replace(d_model=96, n_heads=6)
    assert config.d_head == 16 and config.n_kv_heads == 6


def test_same_model_from_notebook_signature_and_config():
    notebook = trilogy.DecoderOnlyTransformer(100, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_seq_len=40)
    rebuilt = build_model(notebook.config)
    assert type(rebuilt) is type(notebook)
    assert [n for n, _ in rebuilt.named_parameters()] == [n for n, _ in notebook.named_parameters()]


def test_notebook_gpt_has_no_cross_attention():
    model = trilogy.DecoderOnlyTransformer(1000, d_model=256, n_heads=8, n_layers=4)
    assert all(layer.cross_attn is None for layer in model.stack.layers)
    assert model.lm_head.proj.weight is model.embeddings.tokens.weight


def test_mlm_head_is_tied_and_pooler_present():
    model = tiny("tiny-bert")
    assert model.head.decoder.weight is model.embeddings.tokens.weight
    with torch.device("meta"):
        bert = trilogy.build("bert-base-uncased")
    assert bert.pooler is not None


def test_heads_shapes():
    ids = torch.randint(0, 1000, (3, 7))
    assert tiny("tiny-bert", head="sequence-classification", num_labels=5)(ids).shape == (3, 5)
    assert tiny("tiny-bert", head="token-classification", num_labels=4)(ids).shape == (3, 7, 4)
    pre = tiny("tiny-bert", head="pretraining").run(ids)
    assert pre.logits.shape == (3, 7, 1024) and pre.sentence_logits.shape == (3, 2)
    assert tiny("tiny-gpt2", head="none")(ids).shape == (3, 7, 64)
    assert tiny("tiny-t5", head="none")(ids, ids[:, :4]).shape == (3, 4, 64)


def test_token_types_change_the_encoding():
    model = tiny("tiny-bert")
    ids = torch.randint(5, 1000, (1, 6))
    types = torch.tensor([[0, 0, 0, 1, 1, 1]])
    assert (model(ids, token_type_ids=types) - model(ids)).abs().max() > 1e-4
    torch.testing.assert_close(model(ids, token_type_ids=torch.zeros_like(types)), model(ids))
