"""GPT-NeoX (Pythia), Phi-3 and Gemma beyond the parity table (``test_convert_parity.py`` CASES) and greedy
decoding (``test_generate.py``): each block option they need moves the logits when it is wrong; bf16 loads
near transformers' bf16, and Gemma's embeddings are its bitwise; the weights, converted back (q/k/v un-interleaved
per head, gate_up split and joined), are bitwise the file's; the older config.json forms load; and what trilogy
does not reproduce is one line of CheckpointError."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.flop_counter import FlopCounterMode

import trilogy
from trilogy import CheckpointError, ModelConfig
from trilogy.convert import gpt_neox
from trilogy.convert.checkpoint import expected_tensors, read_layout
from trilogy.convert.hf import without_prefix
from trilogy.convert.mapping import checkpoint_tensors
from trilogy.models import build_model
from trilogy.sizing import count_parameters, flops_breakdown

from .convert_helpers import perturb
from .test_convert_parity import TOLERANCE, differences, hf_model, load_hf, make_inputs
from .test_sizing import check_memory

pytestmark = pytest.mark.usefixtures("one_thread")

CAUSAL = ["GPTNeoXForCausalLM-parallel", "Phi3ForCausalLM-partial-rotary", "GemmaForCausalLM"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """case -> (folder written by transformers, the transformers model)."""
    result = {}
    for case in CAUSAL:
        reference = hf_model(case)
        folder = tmp_path_factory.mktemp(case)
        reference.save_pretrained(folder)
        result[case] = folder, reference
    return result


@pytest.mark.parametrize("case,wrong", [
    ("GPTNeoXForCausalLM-parallel", dict(rotary_fraction=1.0)),
    ("GPTNeoXForCausalLM-parallel", dict(parallel_residual=False)),
    ("Phi3ForCausalLM-partial-rotary", dict(rotary_fraction=1.0)),
    ("GemmaForCausalLM", dict(norm_weight_offset=0.0)),
    ("GemmaForCausalLM", dict(embedding_scale=1.0)),
])
def test_each_option_the_type_needs_moves_the_logits(saved, case, wrong):
    """The parity tests can see each option: the same weights without it are far off."""
    folder, reference = saved[case]
    ours = trilogy.from_pretrained(folder)
    changed = build_model(ours.config.replace(**wrong)).eval()
    changed.load_state_dict(ours.state_dict())
    if "norm_weight_offset" in wrong:  # the stored weight is the scale minus one
        assert all(n.weight.abs().max() < 0.5 for n in ours.modules() if isinstance(n, trilogy.blocks.norm.RMSNorm))
    assert max(differences(changed, reference, make_inputs(ours.config)).values()) > 10 * TOLERANCE


@pytest.mark.parametrize("case", CAUSAL)
def test_weights_converted_back_are_bitwise_the_files(saved, case):
    """q/k/v interleaved per head (GPT-NeoX), gate_up_proj split and joined (Phi-3): loading and converting
    back gives the stored bytes."""
    folder, _ = saved[case]
    model = trilogy.from_pretrained(folder)
    layout = read_layout(folder)
    rules, _, _ = expected_tensors(layout, model)
    ours = without_prefix(checkpoint_tensors(rules, model.state_dict(), layout.config), layout.prefix,
                          layout.architecture, layout.family)
    stored = load_file(folder / "model.safetensors")
    assert set(ours) == set(stored)
    for name, tensor in ours.items():
        assert torch.equal(tensor, stored[name]), name


@pytest.mark.parametrize("case", CAUSAL)
def test_bf16_loads_and_saves(saved, case, tmp_path):
    """bf16 weights: the logits are as close to the fp32 ones as transformers' bf16 logits are, and a bf16
    save is read back by transformers in bf16 with no missing keys."""
    folder, reference = saved[case]
    ours = trilogy.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    inputs = make_inputs(ours.config)
    with torch.no_grad():
        exact = reference(**inputs).logits
        theirs = copy.deepcopy(reference).to(torch.bfloat16)(**inputs).logits.float()
        mine = ours.run(inputs["input_ids"], inputs["attention_mask"]).logits.float()
    real = inputs["attention_mask"].bool()
    our_error, their_error = ((x - exact)[real].abs().max().item() for x in (mine, theirs))
    assert our_error <= 2 * their_error + 1e-2, (our_error, their_error)
    assert (mine - theirs)[real].abs().max() < 0.1
    ours.save_pretrained(tmp_path, format="hf")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    back = load_hf(type(reference).__name__, tmp_path)
    assert back.dtype == torch.bfloat16


def test_gemma_embeddings_in_bf16_are_transformers_bitwise(saved):
    """The normalizer sqrt(d_model) is cast to the embeddings' dtype before it multiplies, as in Gemma."""
    folder, reference = saved["GemmaForCausalLM"]
    ours = trilogy.from_pretrained(folder, dtype=torch.bfloat16).eval()
    ids = make_inputs(ours.config)["input_ids"]
    embed = copy.deepcopy(reference.model.embed_tokens).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(ours.embeddings(ids), embed(ids))


def rewrite_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for name, value in changes.items():
        if value is None:
            config.pop(name, None)
        else:
            config[name] = value
    (folder / "config.json").write_text(json.dumps(config))


def test_pythia_style_config_json_loads(tmp_path):
    """Pythia's config.json (transformers 4) gives the rotary settings as rotary_pct and rotary_emb_base."""
    reference = hf_model("GPTNeoXForCausalLM-parallel")
    reference.save_pretrained(tmp_path)
    rewrite_config(tmp_path, rope_parameters=None, rotary_pct=0.5, rotary_emb_base=500, torch_dtype="float32")
    ours = trilogy.from_pretrained(tmp_path)
    assert (ours.config.rotary_fraction, ours.config.rope_theta, ours.config.rotary_dims) == (0.5, 500.0, 6)
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


def test_pythia_files_buffers_are_skipped(tmp_path):
    """Pythia's files (written by transformers 4) also hold each layer's causal-mask buffers and rotary
    frequencies; transformers skips them, and so does trilogy."""
    reference = hf_model("GPTNeoXForCausalLM-parallel")
    reference.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    for i in range(2):
        layer = f"gpt_neox.layers.{i}.attention."
        tensors |= {layer + "bias": torch.ones(1, 1, 64, 64, dtype=torch.bool).tril(),
                    layer + "masked_bias": torch.tensor(-1e9), layer + "rotary_emb.inv_freq": torch.ones(3)}
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = trilogy.from_pretrained(tmp_path)
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


def test_gpt_neox_rotary_default_is_a_quarter():
    hf = dict(vocab_size=99, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=37)
    config = gpt_neox.config_from_hf(hf, "GPTNeoXForCausalLM")
    assert (config.rotary_fraction, config.rotary_dims, config.rope_theta) == (0.25, 4, 10000.0)


def test_phi3_top_level_rope_fields_load(tmp_path):
    """Phi-4-mini's form: partial_rotary_factor and rope_theta at the top level, rope_scaling null."""
    reference = hf_model("Phi3ForCausalLM-partial-rotary")
    reference.save_pretrained(tmp_path)
    rewrite_config(tmp_path, rope_parameters=None, rope_scaling=None, partial_rotary_factor=0.5, rope_theta=500.0,
                   sliding_window=64)
    ours = trilogy.from_pretrained(tmp_path)
    assert (ours.config.rotary_fraction, ours.config.rope_theta) == (0.5, 500.0)
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


def test_gemma_legacy_gelu_is_the_tanh_gelu(tmp_path):
    """Gemma's released config.json says hidden_act "gelu"; transformers computes tanh GELU for it."""
    reference = hf_model("GemmaForCausalLM")
    reference.save_pretrained(tmp_path)
    rewrite_config(tmp_path, hidden_act="gelu")
    ours = trilogy.from_pretrained(tmp_path)
    assert ours.config.activation == "gelu_tanh"
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


LONGROPE = {"rope_type": "longrope", "short_factor": [1.0] * 3, "long_factor": [2.0] * 3, "rope_theta": 500.0,
            "partial_rotary_factor": 0.5}


@pytest.mark.parametrize("case,changes,message", [
    ("Phi3ForCausalLM-partial-rotary", dict(rope_parameters=LONGROPE), "rope_type 'longrope' is not supported"),
    ("Phi3ForCausalLM-partial-rotary", dict(rope_parameters=None, rope_scaling={"type": "su"}),
     "rope_type 'su' is not supported"),
    ("GemmaForCausalLM", dict(attention_bias=True), "attention_bias=True is not supported"),
    ("GemmaForCausalLM", dict(use_bidirectional_attention=True), "use_bidirectional_attention=True"),
    ("GPTNeoXForCausalLM-parallel", dict(attention_bias=False), "attention_bias=False is not supported"),
    ("GPTNeoXForCausalLM-parallel", dict(rope_parameters={"rope_type": "linear", "factor": 2.0}),
     "rope_type 'linear'"),
    ("GPTNeoXForCausalLM-parallel", dict(rope_parameters=None, rotary_pct=0.25), "even, non-zero"),  # 3 dims
])
def test_what_trilogy_does_not_reproduce_is_one_line(tmp_path, case, changes, message):
    hf_model(case).save_pretrained(tmp_path)
    rewrite_config(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message) as error:
        trilogy.from_pretrained(tmp_path)
    assert "\n" not in str(error.value)


def test_a_config_that_disagrees_with_the_fused_weights_names_them(tmp_path):
    hf_model("Phi3ForCausalLM-partial-rotary").save_pretrained(tmp_path)
    rewrite_config(tmp_path, intermediate_size=40)
    with pytest.raises(CheckpointError, match=r"model.layers.0.mlp.gate_up_proj.weight  has shape \[74, 48\], "
                                              r"expected \[80, 48\]"):
        trilogy.from_pretrained(tmp_path)


# --- trilogy size counts the options ---------------------------------------------------------------------

OPTIONS = {
    "neox-like": ("tiny-gpt2", dict(position="rope", d_head=16, rotary_fraction=0.25, parallel_residual=True)),
    "gemma-like": ("tiny-llama", dict(d_head=24, norm_weight_offset=1.0, embedding_scale=8.0,
                                      activation="gelu_tanh", tie_embeddings=True)),
    "gemma2-like": ("tiny-llama", dict(norm_weight_offset=1.0, sandwich_norm=True, attention_softcap=20.0,
                                       logit_softcap=5.0)),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_size_counts_parameters_and_flops(name):
    preset, changes = OPTIONS[name]
    config = ModelConfig.from_preset(preset, **changes)
    model = build_model(config).train()
    assert count_parameters(config) == model.num_parameters()
    ids = torch.randint(3, config.vocab_size, (2, 24))
    with FlopCounterMode(display=False) as counter:
        out = model.run(ids, return_attention=True)
        forward = counter.get_total_flops()
        out.logits.sum().backward()
    predicted = sum(flops_breakdown(config, 2, 24).values())
    assert predicted == pytest.approx(forward, rel=0.05)
    assert 3 * predicted == pytest.approx(counter.get_total_flops(), rel=0.05)


@pytest.mark.parametrize("name", ["neox-like", "gemma2-like"])
def test_size_predicts_the_memory_of_the_options(name):
    preset, changes = OPTIONS[name]
    check_memory(ModelConfig.from_preset(preset, dropout=0.0, **changes), batch=2, seq=128, src=None,
                 attention="sdpa")


# --- how far Gemma 2 is: its layers are Gemma's plus sandwich norms and soft-caps -----------------------------

GEMMA2_NAMES = {  # Gemma 2's names for the norms Gemma does not have (its post_attention_layernorm moves)
    "stack.layers.{}.self_attn_post_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "stack.layers.{}.mlp_norm.weight": "model.layers.{}.pre_feedforward_layernorm.weight",
    "stack.layers.{}.mlp_post_norm.weight": "model.layers.{}.post_feedforward_layernorm.weight",
}


@pytest.mark.parametrize("window", [3, 64], ids=["sliding", "window-covers-the-input"])
def test_gemma2_is_gemma_with_sandwich_norms_soft_caps_and_alternating_windows(window):
    """transformers' Gemma2ForCausalLM is computed by trilogy's Gemma config with ``sandwich_norm``,
    ``attention_softcap``, ``logit_softcap``, its query scale and its layers' alternating sliding windows
    (``sliding_window``, ``layer_attention``): what a gemma2 converter would add is the names above and the
    config fields."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from trilogy.convert import gemma
    from trilogy.convert.mapping import expand

    hf = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=12, max_position_embeddings=64, sliding_window=window,
              query_pre_attn_scalar=16, attn_logit_softcapping=2.0, final_logit_softcapping=3.0)
    torch.manual_seed(0)
    reference = Gemma2ForCausalLM(Gemma2Config(**hf)).eval()
    perturb(reference, seed=1, std=0.3)  # scores and logits well past the caps
    config = gemma.config_from_hf(hf, "GemmaForCausalLM").replace(
        sandwich_norm=True, attention_softcap=2.0, logit_softcap=3.0, attention_scale=16**-0.5,
        sliding_window=window, layer_attention=("sliding", "full"))  # Gemma 2's: every other layer slides
    ours = build_model(config).eval()
    theirs = reference.state_dict()
    state = {}
    for rule in expand(gemma.key_map(config) | GEMMA2_NAMES, list(ours.state_dict())):
        if rule.ours != "lm_head.proj.weight":  # tied
            state[rule.ours] = rule.to_ours([theirs[name] for name in rule.theirs], config)
    assert ours.load_state_dict(state, strict=False).missing_keys == ["lm_head.proj.weight"]
    ours.tie_weights()
    inputs = make_inputs(config)
    worst = differences(ours, reference, inputs)
    assert max(worst.values()) <= TOLERANCE, worst
    with torch.no_grad():
        assert reference(**inputs).logits.abs().max() < 3.0  # the cap bites
    without = build_model(config.replace(attention_softcap=None)).eval()
    without.load_state_dict(ours.state_dict())
    assert max(differences(without, reference, inputs).values()) > 10 * TOLERANCE
