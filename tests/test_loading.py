"""Loading at the file's cost: the weights trilogy loads are bitwise those transformers loads from the same file,
the model computes bitwise what a randomly initialised model given the same weights computes, nothing the file
provides is initialised, a config that disagrees with the weights is refused before any allocation, and
dtype/device put the weights where asked."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

import trilogy
from trilogy import CheckpointError
from trilogy.convert.checkpoint import expected_tensors, read_layout
from trilogy.convert.hf import without_prefix

from .convert_helpers import perturb

REFERENCES = {
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    "llama": lambda: LlamaForCausalLM(LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=48,
                                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)),
    "t5": lambda: T5ForConditionalGeneration(T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                                                      num_heads=4, feed_forward_proj="gated-gelu",
                                                      tie_word_embeddings=False)),
    "bert": lambda: BertForMaskedLM(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=4, intermediate_size=48)),
}


@pytest.fixture(scope="module", params=list(REFERENCES))
def saved(request, tmp_path_factory):
    """(family, folder, the transformers model that wrote it)."""
    torch.manual_seed(0)
    reference = REFERENCES[request.param]().eval()
    perturb(reference)
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    return request.param, folder, reference


def as_stored(model: trilogy.TransformerModel, folder) -> dict[str, torch.Tensor]:
    """trilogy's parameters under the checkpoint's names, converted back (unfused, transposed) as saving does."""
    layout = read_layout(folder)
    rules, _, _ = expected_tensors(layout, model)
    state = model.state_dict()
    tensors = {name: part for rule in rules
               for name, part in zip(rule.theirs, rule.to_theirs(state[rule.ours], layout.config), strict=True)}
    return without_prefix(tensors, layout.prefix, layout.architecture, layout.family)


def inputs(model: trilogy.TransformerModel) -> dict:
    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(3))
    return dict(input_ids=ids, decoder_input_ids=ids[:, :5]) if model.config.arch == "encoder-decoder" else \
        dict(input_ids=ids)


def test_weights_are_bitwise_those_transformers_loads(saved):
    _, folder, reference = saved
    ours = as_stored(trilogy.from_pretrained(folder), folder)
    theirs = type(reference).from_pretrained(folder).state_dict()
    assert ours, "nothing compared"
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name


def test_outputs_are_bitwise_those_of_an_initialised_model_given_the_weights(saved):
    _, folder, _ = saved
    loaded = trilogy.from_pretrained(folder)
    initialised = trilogy.build_model(loaded.config).eval()  # buffers computed the usual way, params overwritten
    initialised.load_state_dict(loaded.state_dict())
    for name, parameter in loaded.named_parameters():
        assert parameter.is_contiguous(), name  # the memory order matmuls see, as in an initialised model
    for (name, ours), theirs in zip(loaded.named_buffers(), initialised.buffers(), strict=True):
        assert torch.equal(ours, theirs), name
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs(loaded)), initialised(**inputs(loaded)), rtol=0, atol=0)


def test_nothing_the_file_provides_is_initialised(saved, monkeypatch):
    _, folder, _ = saved
    initialised = []

    def spy(tensor, *args, **kwargs):
        if not tensor.is_meta:
            initialised.append(tuple(tensor.shape))
        return tensor

    for name in ("normal_", "zeros_", "ones_", "uniform_", "kaiming_uniform_"):
        monkeypatch.setattr(torch.nn.init, name, spy)
    trilogy.from_pretrained(folder)
    assert initialised == []


def test_tied_heads_stay_tied(tmp_path):
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4)).save_pretrained(tmp_path)
    model = trilogy.from_pretrained(tmp_path)
    assert model.lm_head.proj.weight is model.embeddings.tokens.weight
    assert model.num_parameters() == sum(t.numel() for t in load_file(tmp_path / "model.safetensors").values()
                                         if t.dim() > 0)


def test_a_config_that_disagrees_is_refused_before_allocation(tmp_path):
    """With vocab_size 400,000,000 the embedding alone would take 51 GB: the check must come first."""
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 400_000_000}))
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight  has shape \[99, 32\], expected "
                                              r"\[400000000, 32\]"):
        trilogy.from_pretrained(tmp_path)


@pytest.mark.parametrize("stored, asked, expected", [
    (torch.float32, None, torch.float32),
    (torch.bfloat16, None, torch.float32),
    (torch.bfloat16, "auto", torch.bfloat16),
    (torch.float32, "auto", torch.float32),
    (torch.float32, torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.bfloat16, torch.bfloat16),
])
def test_dtype(tmp_path, stored, asked, expected):
    torch.manual_seed(0)
    reference = LlamaForCausalLM(LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                             num_attention_heads=4)).to(stored)
    reference.save_pretrained(tmp_path)
    model = trilogy.from_pretrained(tmp_path, dtype=asked)
    assert {p.dtype for p in model.parameters()} == {expected}
    assert model.stack.rotary.inv_freq.dtype == expected  # buffers follow, as model.to(dtype) has them
    file = load_file(tmp_path / "model.safetensors")
    assert torch.equal(model.embeddings.tokens.weight, file["model.embed_tokens.weight"].to(expected))
    assert torch.equal(as_stored(model, tmp_path)["model.layers.0.self_attn.k_proj.weight"],
                       file["model.layers.0.self_attn.k_proj.weight"].to(expected))


def test_auto_follows_the_config_dtype_field(tmp_path):
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "dtype": "float16"}))
    assert trilogy.from_pretrained(tmp_path, dtype="auto").embeddings.tokens.weight.dtype == torch.float16


def test_bad_dtype_is_refused(tmp_path):
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="dtype must be"):
        trilogy.from_pretrained(tmp_path, dtype=torch.int64)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_puts_weights_and_buffers_there(saved):
    _, folder, _ = saved
    model = trilogy.from_pretrained(folder, dtype=torch.bfloat16, device="cuda")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cuda"}
    on_cpu = trilogy.from_pretrained(folder, dtype=torch.bfloat16)
    for (name, ours), theirs in zip(model.state_dict().items(), on_cpu.state_dict().values(), strict=True):
        assert torch.equal(ours.cpu(), theirs), name
    with torch.no_grad():
        cuda_inputs = {k: v.cuda() for k, v in inputs(model).items()}
        torch.testing.assert_close(model(**cuda_inputs).float().cpu(), on_cpu(**inputs(on_cpu)).float(),
                                   rtol=0.05, atol=0.05)


def test_a_file_without_safetensors_metadata_loads(tmp_path):
    """Files written by other tools (no ``__metadata__``, other tensor order) read the same."""
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4)).eval()
    reference.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    save_file(dict(reversed(tensors.items())), tmp_path / "model.safetensors")
    ours = as_stored(trilogy.from_pretrained(tmp_path), tmp_path)
    assert all(torch.equal(ours[name], tensors[name]) for name in ours)


def test_a_load_costs_about_the_file(tmp_path):
    """A fresh process's resident memory grows by about the file's size, not two or three times it: the
    checkpoint is never held whole beside the model (the old loader peaked near 3x)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_embd=256, n_layer=6, n_head=4)).save_pretrained(tmp_path)
    file_mb = (tmp_path / "model.safetensors").stat().st_size / 2**20
    script = f"""
import json, torch, trilogy
from pathlib import Path
def memory(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024
before = memory("VmRSS")
model = trilogy.from_pretrained({str(tmp_path)!r})
print(json.dumps(memory("VmHWM") - before))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(trilogy.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grown_mb = json.loads(result.stdout)
    assert file_mb > 60 and grown_mb < 1.25 * file_mb, (grown_mb, file_mb)
