"""Qwen2, Qwen3 and Mistral checkpoints beyond the parity table (``test_convert_parity.py``): greedy and beam
decoding give transformers' ``generate`` tokens on prompts longer than their sliding window, bf16 loads, the
window and the q/k norms change the logits (so the parity tests can see them), and the configs trilogy does not
reproduce are one-line CheckpointErrors."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import trilogy
from trilogy import CheckpointError
from trilogy.generate import generate

from .convert_helpers import left_padded_prompts, max_diff
from .test_generate import PAD, spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, WINDOW = 97, 4
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
#: name -> the transformers model: Qwen2 whose last two layers slide, Qwen3 alternating, Mistral all sliding
REFERENCES = {
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SIZES, use_sliding_window=True, sliding_window=WINDOW,
                                                  max_window_layers=1)),
    "qwen3": lambda: Qwen3ForCausalLM(Qwen3Config(**SIZES, head_dim=8, use_sliding_window=True,
                                                  sliding_window=WINDOW, layer_types=[
                                                      "sliding_attention", "full_attention", "sliding_attention"])),
    "mistral": lambda: MistralForCausalLM(MistralConfig(**SIZES, sliding_window=WINDOW)),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (the transformers model, its folder)."""
    result = {}
    for name, make in REFERENCES.items():
        torch.manual_seed(0)
        reference = spread_weights(make(), std=0.3)
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
    assert set(ours.config.layer_windows) == {None, WINDOW} if name != "mistral" else {WINDOW}
    ids, mask = prompts(batch)
    options = dict(max_new_tokens=24, num_beams=num_beams, pad_token_id=PAD, eos_token_id=None)  # 38 positions
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, **options)
    tokens = generate(ours, ids, mask, **options)
    assert torch.equal(tokens, expected)
    assert len(set(tokens[0, -24:].tolist())) > 3  # the comparison is not between constant outputs


@pytest.mark.parametrize("name", list(REFERENCES))
def test_bf16_loads(saved, name):
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


@pytest.mark.parametrize("name,changes", [("mistral", dict(sliding_window=None)),
                                          ("qwen2", dict(layer_attention=None, sliding_window=None)),
                                          ("qwen3", dict(sliding_window=WINDOW + 4)), ("qwen3", dict(qk_norm=False))])
def test_the_options_change_the_logits(saved, name, changes):
    """The parity tests can see a window ignored or misplaced, or the q/k norms left out."""
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    wrong = trilogy.build(ours.config.replace(**changes)).eval()
    wrong.load_state_dict(ours.state_dict(), strict=False)  # without q/k norms: their weights are left out
    ids, mask = prompts(3)
    with torch.no_grad():
        assert max_diff(wrong(ids, attention_mask=mask), reference(ids, attention_mask=mask).logits, mask) > 1e-2


def edited(folder, tmp_path, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").symlink_to(folder / "model.safetensors")
    return tmp_path


@pytest.mark.parametrize("name,changes,message", [
    ("qwen2", dict(use_sliding_window=False), "sliding_attention layers but no sliding window"),
    ("qwen3", dict(layer_types=["full_attention", "chunked_attention", "full_attention"]),
     "layer_types chunked_attention are not supported"),
    ("qwen3", dict(attention_bias=True), "attention_bias=true is not supported"),
    ("qwen3", dict(head_dim=16), r"with the wrong shape"),  # the q/k norms and projections disagree
    ("qwen2", dict(num_hidden_layers=2), "layer_attention has 3 entries, the model has 2 layers"),
    ("mistral", dict(sliding_window=0), "sliding_window must be a positive integer"),
    ("mistral", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
     "rope_type 'linear' is not supported"),
])
def test_unsupported_or_contradicting_configs_are_one_line_errors(saved, tmp_path, name, changes, message):
    _, folder = saved[name]
    with pytest.raises(CheckpointError, match=message) as error:
        trilogy.from_pretrained(edited(folder, tmp_path, **changes))
    assert "\n" not in str(error.value).split(". ")[0]
