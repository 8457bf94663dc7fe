"""Gemma 2 and Gemma 3 (text) beyond the parity table (``test_convert_parity.py`` CASES): greedy and beam decoding
give transformers' ``generate`` tokens on prompts longer than the sliding window; bf16 loads and saves; each
block option the types need moves the logits when it is wrong (so the parity tests can see it); the older
config.json forms (no ``layer_types``; Gemma 3's ``rope_local_base_freq`` and ``rope_scaling``) load; what trilogy
does not reproduce is one line of CheckpointError; and ``trilogy size`` counts the options."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

import trilogy
from trilogy import CheckpointError, ModelConfig
from trilogy.generate import generate
from trilogy.models import build_model
from trilogy.sizing import count_parameters, flops_breakdown

from .convert_helpers import left_padded_prompts, max_diff
from .test_generate import PAD, spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, WINDOW = 97, 4
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, bos_token_id=1, eos_token_id=2, pad_token_id=PAD,
             sliding_window=WINDOW, query_pre_attn_scalar=24, tie_word_embeddings=False)  # tied, the tiny models
#   mostly repeat the last token: its embedding dominates the residual stream
#: name -> the transformers model: Gemma 2 with its default layers (sliding, full, sliding) and both soft-caps;
#: Gemma 3 with layer_types, q/k norms, a local rotary base and linear scaling of the full layers' rotary
REFERENCES = {
    "gemma2": lambda: Gemma2ForCausalLM(Gemma2Config(**SIZES, attn_logit_softcapping=5.0,
                                                     final_logit_softcapping=5.0)),
    "gemma3": lambda: Gemma3ForCausalLM(Gemma3TextConfig(
        **SIZES, final_logit_softcapping=5.0, layer_types=["sliding_attention", "full_attention",
                                                           "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 10000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (the transformers model, its folder)."""
    result = {}
    for name, make in REFERENCES.items():
        torch.manual_seed(0)
        reference = spread_weights(make(), std=0.3)
        with torch.no_grad():  # norms away from their zero init (spread_weights leaves them), but not by much
            for param_name, param in reference.named_parameters():
                if "norm" in param_name:
                    param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.2)
        folder = tmp_path_factory.mktemp(name)
        reference.save_pretrained(folder)
        result[name] = (reference, folder)
    return result


def prompts(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return left_padded_prompts(batch, VOCAB, PAD)


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beams"])
@pytest.mark.parametrize("batch", [1, 3], ids=["batch1", "padded-batch"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_tokens_identical_to_transformers_generate(saved, name, batch, num_beams):
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    assert ours.config.layer_windows == (WINDOW, None, WINDOW)
    ids, mask = prompts(batch)
    options = dict(max_new_tokens=24, num_beams=num_beams, pad_token_id=PAD, eos_token_id=None)  # 38 positions
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, **options)
    tokens = generate(ours, ids, mask, **options)
    assert torch.equal(tokens, expected)
    assert len(set(tokens[0, -24:].tolist())) > 3  # the comparison is not between constant outputs


@pytest.mark.parametrize("name", list(REFERENCES))
def test_bf16_loads_and_saves(saved, name, tmp_path):
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    theirs = type(reference).from_pretrained(folder, dtype=torch.bfloat16).eval()
    ids, mask = prompts(3)
    with torch.no_grad():
        ours_logits, their_logits = ours(ids, attention_mask=mask), theirs(ids, attention_mask=mask).logits
        fp32 = reference(ids, attention_mask=mask).logits
    assert max_diff(ours_logits, their_logits, mask) <= 0.05 * float(fp32.abs().max())  # bf16 rounding, both
    assert max_diff(ours_logits, fp32, mask) <= 2 * max(max_diff(their_logits, fp32, mask), 0.05)
    ours.save_pretrained(tmp_path, format="hf")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    back, info = type(reference).from_pretrained(tmp_path, output_loading_info=True)
    assert back.dtype == torch.bfloat16 and not any(info[k] for k in ("missing_keys", "unexpected_keys"))


@pytest.mark.parametrize("name,changes", [
    ("gemma2", dict(attention_softcap=None)), ("gemma2", dict(logit_softcap=None)),
    ("gemma2", dict(attention_scale=None)), ("gemma2", dict(layer_attention=None, sliding_window=None)),
    ("gemma2", dict(layer_attention=("full", "sliding", "full"))),
    ("gemma3", dict(rope_theta_local=None)), ("gemma3", dict(rope_linear_factor=1.0)),
    ("gemma3", dict(qk_norm=False)), ("gemma3", dict(norm_weight_offset=0.0)),
])
def test_the_options_change_the_logits(saved, name, changes):
    """The parity tests can see each option left out or misplaced."""
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    wrong = build_model(ours.config.replace(**changes)).eval()
    wrong.load_state_dict(ours.state_dict(), strict=False)  # without q/k norms: their weights are left out
    ids, mask = prompts(3)
    with torch.no_grad():
        assert max_diff(wrong(ids, attention_mask=mask), reference(ids, attention_mask=mask).logits, mask) > 1e-2


def edited(folder, tmp_path, drop=(), **changes):
    """A copy of the checkpoint folder whose config.json has ``changes`` and lacks the fields in ``drop``."""
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    for name in drop:
        config.pop(name, None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").symlink_to(folder / "model.safetensors")
    return tmp_path


def check_same_logits(ours, reference):
    ids, mask = prompts(3)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask), reference(ids, attention_mask=mask).logits, mask) <= 1e-4


def test_gemma2_without_layer_types_slides_every_other_layer(saved, tmp_path):
    """Gemma 2's released config.json (transformers 4) has no layer_types: layers 0, 2, ... slide."""
    reference, folder = saved["gemma2"]
    ours = trilogy.from_pretrained(edited(folder, tmp_path, drop=("layer_types",), hidden_act="gelu_pytorch_tanh"))
    assert ours.config.layer_attention == ("sliding", "full", "sliding")
    check_same_logits(ours, reference)


def test_gemma3_older_rope_fields_load(saved, tmp_path):
    """Gemma 3's released config.json (transformers 4): rope_theta and rope_local_base_freq at the top level,
    rope_scaling for the full layers, sliding_window_pattern instead of layer_types."""
    reference, folder = saved["gemma3"]
    old = dict(rope_theta=10000.0, rope_local_base_freq=100.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
               sliding_window_pattern=2)
    ours = trilogy.from_pretrained(edited(folder, tmp_path, drop=("rope_parameters", "layer_types"), **old))
    assert (ours.config.rope_theta, ours.config.rope_theta_local, ours.config.rope_linear_factor) == (1e4, 100, 8)
    check_same_logits(ours, reference)


def test_gemma3_defaults_when_config_json_leaves_them_out():
    """Gemma3TextConfig's defaults: five sliding layers of six, rotary bases 1,000,000 and 10,000, no caps."""
    from trilogy.convert import gemma3_text

    hf = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=7, num_attention_heads=4)
    config = gemma3_text.config_from_hf(hf, "Gemma3ForCausalLM")
    assert config.layer_attention == ("sliding",) * 5 + ("full", "sliding")
    assert (config.rope_theta, config.rope_theta_local, config.rope_linear_factor) == (1e6, 1e4, 1.0)
    assert (config.attention_softcap, config.logit_softcap, config.sliding_window, config.d_head) == (None, None,
                                                                                                   4096, 256)
    reference = Gemma3TextConfig(**hf)
    assert [k.split("_")[0] for k in reference.layer_types] == list(config.layer_attention)


@pytest.mark.parametrize("name,changes,message", [
    ("gemma2", dict(sliding_window=None), "sliding_attention layers but sliding_window is null"),
    ("gemma2", dict(layer_types=["full_attention", "chunked_attention", "full_attention"]),
     "layer_types chunked_attention are not supported"),
    ("gemma2", dict(attention_bias=True), "attention_bias=True is not supported"),
    ("gemma3", dict(use_bidirectional_attention=True), "use_bidirectional_attention=True is not supported"),
    ("gemma3", dict(rope_parameters={"full_attention": {"rope_type": "yarn", "factor": 8.0, "rope_theta": 1e4},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}),
     "rope_type 'yarn' of the full_attention layers is not supported"),
    ("gemma3", dict(rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e4},
                                     "sliding_attention": {"rope_type": "linear", "factor": 2.0}}),
     "rope_type 'linear' of the sliding_attention layers is not supported"),
    ("gemma3", dict(head_dim=8), "with the wrong shape"),  # the q/k norms and projections disagree
    ("gemma3", dict(num_hidden_layers=2), "layer_attention has 3 entries, the model has 2 layers"),
])
def test_unsupported_or_contradicting_configs_are_one_line_errors(saved, tmp_path, name, changes, message):
    _, folder = saved[name]
    with pytest.raises(CheckpointError, match=message) as error:
        trilogy.from_pretrained(edited(folder, tmp_path, **changes))
    assert "\n" not in str(error.value).split(". ")[0]


def test_a_scale_gemma_cannot_write_has_no_hf_equivalent(saved, tmp_path):
    """Gemma2Config holds the query scale as an integer query_pre_attn_scalar: another scale is not Gemma 2."""
    _, folder = saved["gemma2"]
    ours = trilogy.from_pretrained(folder)
    changed = build_model(ours.config.replace(attention_scale=0.3))
    with pytest.raises(CheckpointError, match="no Hugging Face equivalent.*attention_scale=0.3"):
        changed.save_pretrained(tmp_path, format="hf")


# --- trilogy size counts the options ---------------------------------------------------------------------

GEMMA3_LIKE = dict(norm_weight_offset=1.0, sandwich_norm=True, qk_norm=True, logit_softcap=5.0,
                   sliding_window=8, layer_attention=("sliding", "full"), rope_theta_local=100.0,
                   rope_linear_factor=8.0)


def test_size_counts_parameters_and_flops():
    config = ModelConfig.from_preset("tiny-llama", **GEMMA3_LIKE)
    model = build_model(config).train()
    assert count_parameters(config) == model.num_parameters()
    ids = torch.randint(3, config.vocab_size, (2, 24))
    with FlopCounterMode(display=False) as counter:
        out = model.run(ids)
        forward = counter.get_total_flops()
        out.logits.sum().backward()
    predicted = sum(flops_breakdown(config, 2, 24).values())
    assert predicted == pytest.approx(forward, rel=0.05)
    assert 3 * predicted == pytest.approx(counter.get_total_flops(), rel=0.05)


def test_the_local_rotary_table_is_a_buffer_of_sliding_stacks_only():
    """The second table exists where a layer slides, and loading computes it (it is not in the file)."""
    config = ModelConfig.from_preset("tiny-llama", **GEMMA3_LIKE)
    stack = build_model(config).stack
    assert stack.rotary_local is not None and stack.rotary_local.theta == 100.0
    assert torch.allclose(stack.rotary.inv_freq * 8.0, build_model(config.replace(rope_linear_factor=1.0)).stack
                          .rotary.inv_freq)
    assert build_model(config.replace(layer_attention=None, sliding_window=None)).stack.rotary_local is None
    with pytest.raises(trilogy.TrilogyError, match="apply to rotary positions"):
        ModelConfig.from_preset("tiny-gpt2", rope_theta_local=100.0)


def test_info_names_the_options(saved):
    """``trilogy info`` lists what sets Gemma 3 apart from a plain decoder, the new rotary options included."""
    from trilogy.convert.summary import block_options

    _, folder = saved["gemma3"]
    options = block_options(trilogy.from_pretrained(folder).config)
    assert {"qk_norm": True, "sandwich_norm": True, "rope_theta_local": 100.0, "rope_linear_factor": 8.0,
            "norm_weight_offset": 1.0, "logit_softcap": 5.0}.items() <= options.items()
