"""save_pretrained writes sharded safetensors with the index transformers reads, tensor by tensor: the shards
round-trip through transformers' ``from_pretrained`` and trilogy's, and the files are ordinary safetensors."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

import trilogy
from trilogy.convert import safetensors_file
from trilogy.convert.safetensors_file import bytes_of
from trilogy.convert.shards import parse_size

from .convert_helpers import max_diff, perturb

AUTO = {"tiny-llama": AutoModelForCausalLM, "tiny-gpt2": AutoModelForCausalLM, "tiny-t5": AutoModelForSeq2SeqLM}


def sample(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(1))
    return dict(input_ids=ids, decoder_input_ids=ids[:, :4]) if model.config.arch == "encoder-decoder" else \
        dict(input_ids=ids)


@pytest.mark.parametrize("preset", list(AUTO))
def test_shards_round_trip_through_transformers_and_trilogy(tmp_path, preset):
    model = trilogy.build(preset).eval()
    perturb(model)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and sorted(set(index["weight_map"].values())) == [s.name for s in shards]
    assert not (tmp_path / "model.safetensors").exists()
    for shard in shards:  # filled to the limit, not past it, unless one tensor alone is larger
        tensors = load_file(shard).values()
        assert len(tensors) == 1 or sum(t.numel() * t.element_size() for t in tensors) <= 100_000
    stored = {name: tensor for shard in shards for name, tensor in load_file(shard).items()}
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in stored.values())

    reference, loading = AUTO[preset].from_pretrained(tmp_path, output_loading_info=True)
    assert not any(loading[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), loading
    inputs = sample(model)
    with torch.no_grad():
        assert max_diff(model(**inputs), reference.eval()(**inputs).logits) < 1e-4
        torch.testing.assert_close(trilogy.from_pretrained(tmp_path)(**inputs), model(**inputs), rtol=0, atol=0)


def test_one_file_below_the_limit_and_stale_weights_removed(tmp_path):
    model = trilogy.build("tiny-gpt2").eval()
    perturb(model)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    model.save_pretrained(tmp_path)  # the default 5GB: one model.safetensors, and the old shards must go
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]
    stored = load_file(tmp_path / "model.safetensors")
    assert torch.equal(stored["transformer.wte.weight"], model.embeddings.tokens.weight)
    assert torch.equal(stored["transformer.h.0.attn.c_attn.weight"],  # Conv1D: (in, out)
                       model.stack.layers[0].self_attn.qkv.weight.t())


def copies_while_saving(model, folder, monkeypatch) -> tuple[list[int], int]:
    """The bytes of each copy ``save_pretrained`` makes while writing, and the most alive at once."""
    copies: list[int] = []
    live: list[weakref.ref] = []
    peak = 0

    def counting(tensor):
        nonlocal peak
        array = bytes_of(tensor)
        if array.ctypes.data != tensor.data_ptr():  # a copy
            copies.append(array.nbytes)
            live[:] = [ref for ref in live if ref() is not None] + [weakref.ref(array)]
            peak = max(peak, sum(ref().nbytes for ref in live if ref() is not None))
        return array

    monkeypatch.setattr(safetensors_file, "bytes_of", counting)
    model.save_pretrained(folder)
    return copies, peak


def test_contiguous_weights_are_written_from_the_model(tmp_path, monkeypatch):
    """Llama's weights, q/k/v included (row slices of our fused qkv), are written without any copy."""
    copies, _ = copies_while_saving(trilogy.build("tiny-llama").eval(), tmp_path, monkeypatch)
    assert copies == []


def test_save_streams_tensor_by_tensor(tmp_path, monkeypatch):
    """No second copy of the model: the copies made while writing (GPT-2's Conv1D weights, transposed) are
    alive one at a time."""
    copies, peak = copies_while_saving(trilogy.build("tiny-gpt2").eval(), tmp_path, monkeypatch)
    assert len(copies) > 1 and peak == max(copies)


@pytest.mark.parametrize("size, expected", [
    ("5GB", 5 * 10**9), ("500MiB", 500 * 2**20), ("20KB", 20_000), ("1.5GB", 1_500_000_000), (1000, 1000),
])
def test_parse_size(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["5 parsecs", "-1GB", 0, "GB"])
def test_bad_sizes_are_refused(size, tmp_path):
    with pytest.raises(ValueError, match="max_shard_size must be"):
        trilogy.build("tiny-gpt2").save_pretrained(tmp_path, max_shard_size=size)
