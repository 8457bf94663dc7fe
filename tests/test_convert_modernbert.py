"""ModernBERT beyond the parity table (``test_convert_parity.py`` CASES, every class both ways): left padding,
bf16, each block option it needs moving the outputs when wrong (so the parity tests can see it), the older
config.json form, transformers' window rule, the one-line errors, and ``trilogy size`` against the built model,
torch's FLOP counter and the measured memory."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import trilogy
from trilogy import CheckpointError, ModelConfig
from trilogy.convert import modernbert
from trilogy.models import build_model
from trilogy.sizing import count_parameters, flops_breakdown

from .test_convert_parity import CASES, MODERNBERT, TOLERANCE, differences, hf_model, load_hf, make_inputs
from .test_sizing import check_training

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = [case for case in CASES if case.startswith("ModernBert")]


def saved(tmp_path, case: str, drop: tuple[str, ...] = (), **changes):
    """The folder of ``case``'s tiny transformers model, with ``changes`` in its config.json and ``drop`` out."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config = {name: value for name, value in {**config, **changes}.items() if name not in drop}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return reference, tmp_path


@pytest.mark.parametrize("case", ["ModernBertModel", "ModernBertForMaskedLM",
                                  "ModernBertForSequenceClassification-mean-biases",
                                  "ModernBertForTokenClassification"])
def test_left_padding(tmp_path, case):
    """transformers numbers every position 0..T-1 (padding included), as trilogy's bidirectional stacks do. (The
    first-token classifier is left out: on a left-padded row it reads a padded position, whose window may hold
    no real key, which each library fills in its own way.)"""
    reference, folder = saved(tmp_path, case)
    ours = trilogy.from_pretrained(folder)
    worst = differences(ours, reference, make_inputs(ours.config, left_padding=True))
    assert max(worst.values()) <= TOLERANCE, worst


@pytest.mark.parametrize("case", ["ModernBertForMaskedLM", "ModernBertForSequenceClassification-cls"])
def test_bf16_loads_and_saves(tmp_path, case):
    reference, folder = saved(tmp_path / "hf", case)
    ours = trilogy.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    inputs = make_inputs(ours.config)
    with torch.no_grad():
        exact = reference(**inputs).logits
        theirs = copy.deepcopy(reference).to(torch.bfloat16)(**inputs).logits.float()
        mine = ours.run(inputs["input_ids"], inputs["attention_mask"]).logits.float()
    rows = inputs["attention_mask"].bool() if exact.dim() == 3 else slice(None)
    our_error, their_error = ((x - exact)[rows].abs().max().item() for x in (mine, theirs))
    assert our_error <= 2 * their_error + 1e-2, (our_error, their_error)
    ours.save_pretrained(tmp_path / "ours", format="hf")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_hf(CASES[case][2], tmp_path / "ours").dtype == torch.bfloat16


@pytest.mark.parametrize("case,wrong", [
    ("ModernBertModel", dict(first_attention_norm=True)),  # layer 0 would norm the normed embeddings again
    ("ModernBertModel", dict(rope_theta_local=None)),
    ("ModernBertModel", dict(sliding_window=2)),  # one token to each side instead of two
    ("ModernBertModel", dict(layer_attention=None, sliding_window=None)),
    ("ModernBertForMaskedLM", dict(embedding_norm=False)),
    ("ModernBertForSequenceClassification-mean-biases", dict(pooling="first")),
    ("ModernBertForSequenceClassification-cls", dict(head_transform=False)),
    ("ModernBertForTokenClassification", dict(head_transform=False)),
])
def test_each_option_the_type_needs_moves_the_outputs(tmp_path, case, wrong):
    reference, folder = saved(tmp_path, case)
    ours = trilogy.from_pretrained(folder)
    changed = build_model(ours.config.replace(**wrong)).eval()
    changed.load_state_dict(ours.state_dict(), strict=False)  # the norms it adds start at 1, those it drops go
    assert max(differences(changed, reference, make_inputs(ours.config)).values()) > 10 * TOLERANCE


def test_the_released_config_json_form_loads(tmp_path):
    """answerdotai/ModernBERT-base's config.json (transformers 4): global_attn_every_n_layers and the two rotary
    bases at the top level, no layer_types and no rope_parameters."""
    older = dict(global_attn_every_n_layers=3, global_rope_theta=500.0, local_rope_theta=50.0, local_attention=4)
    reference, folder = saved(tmp_path, "ModernBertForMaskedLM", drop=("layer_types", "rope_parameters"), **older)
    ours = trilogy.from_pretrained(folder)
    assert ours.config.layer_attention == ("full", "sliding", "sliding")
    assert (ours.config.rope_theta, ours.config.rope_theta_local) == (500.0, 50.0)
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


@pytest.mark.parametrize("local_attention,window", [(128, 65), (4, 3), (5, 3)])
def test_a_token_sees_half_the_local_attention_on_each_side(local_attention, window):
    """transformers' rule: |query - key| <= local_attention // 2; trilogy's window counts the keys less than it
    away, so it is one more. Written back, the window is an even local_attention (5 and 4 are the same model)."""
    hf = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
              local_attention=local_attention)
    config = modernbert.config_from_hf(hf, "ModernBertModel")
    assert config.sliding_window == window and config.layer_attention == ("full", "sliding", "sliding")
    assert modernbert.config_to_hf(config)["local_attention"] == 2 * (window - 1)
    assert (config.rope_theta, config.rope_theta_local, config.first_attention_norm) == (160_000, 10_000, False)


@pytest.mark.parametrize("case,changes,message", [
    ("ModernBertForMaskedLM", dict(rope_scaling={"rope_type": "linear", "factor": 2.0}),
     "rope_type 'linear' is not supported"),
    ("ModernBertForMaskedLM", dict(decoder_bias=False), "decoder_bias=False is not supported"),
    ("ModernBertForMaskedLM", dict(classifier_activation="relu"), "classifier_activation='relu' is not supported"),
    ("ModernBertForMaskedLM", dict(classifier_bias=True), "classifier_bias=True with attention_bias=False"),
    ("ModernBertModel", dict(attention_bias=True), "attention_bias=True with mlp_bias=False"),
    ("ModernBertForTokenClassification", dict(classifier_activation="silu"),
     "classifier_activation='silu' is not supported"),
    ("ModernBertForSequenceClassification-cls", dict(classifier_pooling="max"),
     "classifier_pooling='max' is not supported"),
    ("ModernBertModel", dict(layer_types=["full_attention", "chunked_attention", "full_attention"]),
     "layer_types chunked_attention are not supported"),
    ("ModernBertModel", dict(intermediate_size=40), r"model.layers.0.mlp.Wi.weight  has shape \[74, 32\], "
                                                    r"expected \[80, 32\]"),
])
def test_what_trilogy_does_not_reproduce_is_one_line(tmp_path, case, changes, message):
    _, folder = saved(tmp_path, case, **changes)
    with pytest.raises(CheckpointError, match=message) as error:
        trilogy.from_pretrained(folder)
    assert "\n" not in str(error.value).split(". ")[0]


def test_what_transformers_ignores_is_ignored(tmp_path):
    """ModernBertModel has no head: its classifier fields, whatever they say, are not read."""
    reference, folder = saved(tmp_path, "ModernBertModel", classifier_bias=True, classifier_activation="silu",
                              classifier_pooling="max", decoder_bias=False)
    ours = trilogy.from_pretrained(folder)
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


# --- trilogy size counts the options ---------------------------------------------------------------------

HEADS = {"model": dict(head="none"), "mlm": dict(head="mlm"),
         "cls": dict(head="sequence-classification", num_labels=3),
         "mean": dict(head="sequence-classification", pooling="mean", bias=True),
         "tokens": dict(head="token-classification", num_labels=3), "spans": dict(head="question-answering")}


def modernbert_like(**changes) -> ModelConfig:
    hf = {k: v for k, v in MODERNBERT.items() if not k.endswith("token_id")}
    return modernbert.config_from_hf(hf, "ModernBertModel").replace(dropout=0.0, **changes)


@pytest.mark.parametrize("head", list(HEADS))
def test_size_counts_parameters_and_flops(head):
    config = modernbert_like(**HEADS[head], head_transform=True, pooler_activation="gelu")
    model = build_model(config).train()
    assert count_parameters(config) == model.num_parameters()
    ids = torch.randint(3, config.vocab_size, (2, 24))
    with FlopCounterMode(display=False) as counter:
        out = model.run(ids, return_attention=True)  # the explicit path: plain matmuls, counted as such
        forward = counter.get_total_flops()
        (out.logits if out.logits is not None else out.hidden_states).sum().backward()
    predicted = sum(flops_breakdown(config, 2, 24).values())
    assert predicted == pytest.approx(forward, rel=0.05)
    assert 3 * predicted == pytest.approx(counter.get_total_flops(), rel=0.05)


@pytest.mark.parametrize("changes", [{}, dict(bias=True, norm_bias=True)])
def test_size_predicts_the_training_memory(changes):
    """The training peak of the MLM class, at ModernBERT's proportions (d_ff 1.5 d_model). (The inference peak
    of rotary models is predicted low at this size, about 0.79x with or without ModernBERT's options, as for a
    Llama-shaped model without its LM head: not these options' doing.)"""
    check_training(modernbert_like(head="mlm", d_model=64, d_ff=96, **changes), batch=2, seq=128, src=None)


def test_parameters_against_transformers():
    """The count ``trilogy size`` prints is transformers' own, for every class (the tied decoder once)."""
    for case in CLASSES:
        reference = hf_model(case)
        config = modernbert.config_from_hf(reference.config.to_dict(), CASES[case][2])
        assert count_parameters(config) == sum(p.numel() for p in reference.parameters()), case


def test_info_names_the_options(tmp_path):
    from trilogy.convert.summary import block_options

    _, folder = saved(tmp_path, "ModernBertForSequenceClassification-mean-biases")
    options = block_options(trilogy.from_pretrained(folder).config)
    assert {"first_attention_norm": False, "head_transform": True, "pooling": "mean", "pooler_activation": "relu",
            "rope_theta_local": 50.0, "sliding_window": 3}.items() <= options.items()
