"""Bad checkpoints get a clear error and never a silent partial load; other weight-file layouts load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import trilogy
from trilogy import CheckpointError
from trilogy.cli import main

from .convert_helpers import max_diff, perturb


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    perturb(model)
    return model


@pytest.fixture
def folder(tmp_path, reference):
    reference.save_pretrained(tmp_path)
    return tmp_path


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def edit_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def assert_same_logits(model, reference):
    ids = torch.randint(0, 99, (2, 7))
    with torch.no_grad():
        assert max_diff(model(ids), reference(ids).logits) <= 1e-4


def test_unsupported_model_type_lists_the_supported_ones(folder):
    edit_config(folder, model_type="no-such-type", architectures=["NoSuchTypeForCausalLM"])
    with pytest.raises(CheckpointError, match="model_type 'no-such-type' is not supported") as caught:
        trilogy.from_pretrained(folder)
    for name in ("BertForPreTraining", "GPT2LMHeadModel", "T5EncoderModel", "LlamaForCausalLM", "Qwen3ForCausalLM"):
        assert name in str(caught.value)


def test_unsupported_architecture_lists_the_supported_ones(folder):
    edit_config(folder, architectures=["GPT2DoubleHeadsModel"])
    with pytest.raises(CheckpointError, match="GPT2DoubleHeadsModel is not supported.*GPT2LMHeadModel"):
        trilogy.from_pretrained(folder)


def test_unsupported_option_is_refused(tmp_path):
    config = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=4, rope_parameters={"rope_type": "linear", "rope_theta": 1e4,
                                                                 "factor": 2.0})
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="rope_type 'linear' is not supported"):
        trilogy.from_pretrained(tmp_path)


def test_missing_tensor_is_named_with_its_expected_shape(folder):
    edit_weights(folder, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    with pytest.raises(CheckpointError, match=r"(?s)1 missing tensor.*transformer\.h\.1\.mlp\.c_fc\.weight  "
                                              r"expected shape \[32, 128\]"):
        trilogy.from_pretrained(folder)


def test_unexpected_tensor_is_named(folder):
    edit_weights(folder, lambda t: t.update({"transformer.h.2.ln_1.weight": torch.ones(32)}))
    with pytest.raises(CheckpointError, match=r"(?s)1 unexpected tensor.*transformer\.h\.2\.ln_1\.weight  shape \[32\]"):
        trilogy.from_pretrained(folder)


def test_wrong_shape_is_named_with_both_shapes(folder):
    edit_weights(folder, lambda t: t.update({"transformer.wpe.weight": torch.zeros(32, 32)}))
    with pytest.raises(CheckpointError, match=r"transformer\.wpe\.weight  has shape \[32, 32\], expected \[64, 32\]"):
        trilogy.from_pretrained(folder)


def test_sizes_that_disagree_with_config_json_are_caught(folder):
    edit_config(folder, n_inner=64)  # both MLP weights and the first bias of each layer now have the wrong shape
    with pytest.raises(CheckpointError, match=r"6 tensor\(s\) with the wrong shape"):
        trilogy.from_pretrained(folder)


def test_truncated_safetensors(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        trilogy.from_pretrained(folder)


def test_corrupted_safetensors_header(folder):
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[8:40] = b"\xff" * 32
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        trilogy.from_pretrained(folder)


def test_bad_config_json(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        trilogy.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        trilogy.from_pretrained(folder)


def test_no_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no weights: looked for model.safetensors"):
        trilogy.from_pretrained(folder)


def as_bin(folder, reference) -> None:
    (folder / "model.safetensors").unlink()
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")


def test_pytorch_model_bin_loads(folder, reference):
    as_bin(folder, reference)
    assert_same_logits(trilogy.from_pretrained(folder), reference)


class Payload:
    """Unpickling this runs exec: it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('executed')",)


def test_bin_with_code_is_refused_and_nothing_runs(folder, reference, tmp_path_factory):
    marker = tmp_path_factory.mktemp("marker") / "executed.txt"
    (folder / "model.safetensors").unlink()
    state = dict(reference.state_dict())
    state["transformer.wte.weight"] = Payload(marker)
    torch.save(state, folder / "pytorch_model.bin")
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # the payload is live: a plain load runs it
    assert marker.read_text() == "executed"
    marker.unlink()
    with pytest.raises(CheckpointError, match="refused.*nothing in it was executed"):
        trilogy.from_pretrained(folder)
    assert not marker.exists()


def test_bin_with_non_tensor_entries_is_refused(folder, reference):
    (folder / "model.safetensors").unlink()
    torch.save({**reference.state_dict(), "step": 3}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not named tensors: step"):
        trilogy.from_pretrained(folder)


def test_truncated_and_garbage_bin(folder, reference):
    as_bin(folder, reference)
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        trilogy.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError):
        trilogy.from_pretrained(folder)


def test_sharded_safetensors_load(tmp_path, reference):
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    assert_same_logits(trilogy.from_pretrained(tmp_path), reference)
    shards[-1].unlink()
    with pytest.raises(CheckpointError, match=f"names shard {shards[-1].name}, which is missing"):
        trilogy.from_pretrained(tmp_path)


def test_tokenizer_travels_with_the_model(folder, tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    model = trilogy.from_pretrained(folder)
    assert model.tokenizer.encode("hello world").ids == [1, 2]
    copy = tmp_path_factory.mktemp("copy")
    model.config.eos_token_id = 2
    model.save_pretrained(copy)
    assert trilogy.from_pretrained(copy).tokenizer.encode("world hello").ids == [2, 1]
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(copy)
    assert theirs("world hello").input_ids == [2, 1] and theirs.eos_token == "world"


def test_info_reports_a_checkpoint(folder, capsys):
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["family"], info["architecture"], info["n_layers"], info["d_model"]) == \
        ("decoder-only", "GPT2LMHeadModel", 2, 32)
    assert info["parameters"] == trilogy.from_pretrained(folder).num_parameters()
    assert info["weights_match_config"]
    assert main(["info", str(folder)]) == 0
    assert "GPT2LMHeadModel" in capsys.readouterr().out


def test_info_names_the_block_options_a_checkpoint_needs(tmp_path, capsys):
    """A Mistral with a window and a Qwen3 with q/k norms: ``trilogy info`` names what sets them apart from a
    plain decoder, and nothing for GPT-2."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen3Config, Qwen3ForCausalLM

    sizes = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)
    MistralForCausalLM(MistralConfig(**sizes, sliding_window=8)).save_pretrained(tmp_path / "mistral")
    Qwen3ForCausalLM(Qwen3Config(**sizes, head_dim=8)).save_pretrained(tmp_path / "qwen3")
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4)).save_pretrained(tmp_path / "gpt2")
    found = {}
    for name in ("mistral", "qwen3", "gpt2"):
        assert main(["info", str(tmp_path / name), "--json"]) == 0
        found[name] = json.loads(capsys.readouterr().out)["block_options"]
    assert found == {"mistral": {"sliding_window": 8}, "qwen3": {"qk_norm": True}, "gpt2": {}}
    assert main(["info", str(tmp_path / "mistral")]) == 0
    assert "options      sliding_window=8" in capsys.readouterr().out


def test_info_flags_mismatched_weights_and_bad_folders(folder, tmp_path_factory, capsys):
    edit_weights(folder, lambda t: t.pop("transformer.ln_f.bias"))
    assert main(["info", str(folder)]) == 1
    assert "transformer.ln_f.bias  expected shape [32]" in capsys.readouterr().out
    assert main(["info", str(tmp_path_factory.mktemp("empty"))]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("trilogy info: error:") and "config.json is missing" in error
    assert len(error.splitlines()) == 1


def test_old_bert_layer_norm_names_load(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    reference = BertForMaskedLM(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=4, intermediate_size=37)).eval()
    perturb(reference)
    reference.config.architectures = ["BertForMaskedLM"]
    reference.config.save_pretrained(tmp_path)
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in reference.state_dict().items()}
    assert any(k.endswith("LayerNorm.gamma") for k in state)
    torch.save(state, tmp_path / "pytorch_model.bin")  # as the original bert-base-uncased file names them
    ids = torch.randint(0, 99, (2, 7))
    with torch.no_grad():
        assert max_diff(trilogy.from_pretrained(tmp_path)(ids), reference(ids).logits) <= 1e-4


def test_info_reads_bin_and_sharded_folders(tmp_path, reference, capsys):
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    (tmp_path / "bin").mkdir()
    reference.config.save_pretrained(tmp_path / "bin")
    torch.save(reference.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    for name, weights_file in (("sharded", "model.safetensors.index.json"), ("bin", "pytorch_model.bin")):
        assert main(["info", str(tmp_path / name), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["weights_file"] == weights_file and info["weights_match_config"]
        assert info["dtypes"] == ["float32"]
