"""RoBERTa, XLM-R and DistilBERT beyond the parity table (``test_convert_parity.py``): left padding with each
model's own position ids, DistilBERT's sinusoidal position table, bf16 loading, the parameter count against
transformers', and the one-line errors for checkpoints trilogy does not reproduce."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import trilogy
from trilogy.cli import main
from trilogy.convert import CheckpointError
from trilogy.sizing import count_parameters

from .convert_helpers import load_bf16_checked, max_diff, perturb
from .test_convert_parity import CASES, ROBERTA, TOLERANCE, VOCAB, differences, hf_model, load_hf, make_inputs

ENCODERS = [case for case in CASES if case.startswith(("Roberta", "XLMRoberta", "DistilBert"))]
MASKED_LMS = ["RobertaForMaskedLM", "XLMRobertaForMaskedLM", "DistilBertForMaskedLM"]


def saved(tmp_path, case: str, **changes):
    """The folder of ``case``'s tiny transformers model, with ``changes`` written into its config.json."""
    hf_model(case).save_pretrained(tmp_path)
    if changes:
        config = json.loads((tmp_path / "config.json").read_text())
        (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))
    return tmp_path


@pytest.mark.parametrize("case", ["BertModel", "RobertaModel", "RobertaForSequenceClassification",
                                  "XLMRobertaForTokenClassification", "DistilBertModel"])
def test_left_padding_with_each_models_own_positions(tmp_path, case):
    """No position ids given to either: BERT and DistilBERT number every position 0..T-1, padding included, and
    RoBERTa numbers real tokens only (transformers from the pad id, trilogy from the mask): both agree."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    worst = differences(ours, reference, make_inputs(ours.config, left_padding=True))
    assert max(worst.values()) <= TOLERANCE, worst


def test_roberta_left_padding_needs_positions_from_mask(tmp_path):
    """The test above can see RoBERTa's numbering: positions 0..T-1 move the left-padded rows' outputs."""
    reference = hf_model("RobertaModel")
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    inputs = make_inputs(ours.config, left_padding=True)
    every_position = trilogy.build(ours.config.replace(positions_from_mask=False)).eval()
    every_position.load_state_dict(ours.state_dict())
    assert differences(every_position, reference, inputs)["hidden"] > 10 * TOLERANCE
    assert differences(every_position, reference, make_inputs(ours.config))["hidden"] <= TOLERANCE  # right padding


@pytest.mark.parametrize("case,extras", [
    ("RobertaForMaskedLM", {"roberta.pooler.dense.weight": (32, 32), "roberta.pooler.dense.bias": (32,),
                            "roberta.embeddings.position_ids": (1, 66), "roberta.embeddings.token_type_ids": (1, 66),
                            "lm_head.decoder.bias": (VOCAB,)}),
    ("BertForMaskedLM", {"bert.pooler.dense.weight": (32, 32), "bert.pooler.dense.bias": (32,),
                         "cls.seq_relationship.weight": (2, 32), "cls.seq_relationship.bias": (2,)}),
])
def test_files_with_the_extras_of_the_original_checkpoints_load(tmp_path, case, extras):
    """roberta-base's and bert-base-uncased's own files (their MLM classes) also hold a pooler, the position-id
    buffers, a copy of the decoder bias, or BERT's next-sentence head: not part of the class, they are skipped,
    as transformers skips them."""
    from safetensors.torch import load_file, save_file

    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors.update({name: torch.zeros(shape) for name, shape in extras.items()})
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = trilogy.from_pretrained(tmp_path)
    assert ours.pooler is None
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE


def test_roberta_positions_start_past_the_padding_rows(tmp_path):
    ours = trilogy.from_pretrained(saved(tmp_path, "RobertaForMaskedLM"))
    assert (ours.config.position_offset, ours.config.max_seq_len, ours.config.type_vocab_size) == (2, 64, 1)
    assert ours.embeddings.positions.embedding.weight.shape == (66, 32)
    ids = torch.randint(3, 99, (1, 64))
    assert ours(ids).shape == (1, 64, 99)
    with pytest.raises(trilogy.TrilogyError, match="max_seq_len=64"):
        ours(torch.randint(3, 99, (1, 65)))


def test_distilbert_sinusoidal_positions_load_and_save(tmp_path):
    """The sinusoidal table is in the checkpoint like any weight: loaded as it is, written back with the flag."""
    config_class, fields, class_name = CASES["DistilBertForMaskedLM"]
    torch.manual_seed(0)
    reference = transformers.DistilBertForMaskedLM(config_class(**fields, sinusoidal_pos_embds=True))
    table = reference.distilbert.embeddings.position_embeddings.weight
    positions = torch.arange(64.0)
    torch.testing.assert_close(table[:, :2].detach(), torch.stack([positions.sin(), positions.cos()], -1))
    reference.eval().save_pretrained(tmp_path / "hf")
    ours = trilogy.from_pretrained(tmp_path / "hf")
    inputs = make_inputs(ours.config)
    assert max(differences(ours, reference, inputs).values()) <= TOLERANCE
    ours.save_pretrained(tmp_path / "ours", format="hf")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["sinusoidal_pos_embds"] is True
    back = load_hf(class_name, tmp_path / "ours")
    torch.testing.assert_close(back.distilbert.embeddings.position_embeddings.weight, table, rtol=0, atol=0)
    assert max(differences(ours, back, inputs).values()) <= TOLERANCE


@pytest.mark.parametrize("case", MASKED_LMS)
def test_bf16_loads(tmp_path, case):
    """Each weight is the file's, cast to bf16; the logits stay near the fp32 reference's."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    ours = load_bf16_checked(tmp_path)
    inputs = make_inputs(ours.config)
    with torch.no_grad():
        theirs = reference(**inputs).logits
        logits = ours.run(inputs["input_ids"], inputs["attention_mask"]).logits
    assert logits.dtype == torch.bfloat16
    assert max_diff(logits, theirs, inputs["attention_mask"]) <= 0.05 * float(theirs.abs().max())


@pytest.mark.parametrize("case", ENCODERS)
def test_parameter_count_matches_transformers(tmp_path, case):
    """``trilogy size``'s count (from the config alone) against the loaded model and transformers' own."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    theirs = sum(p.numel() for p in reference.parameters())
    assert count_parameters(ours.config) == ours.num_parameters() == theirs


@pytest.mark.parametrize("case", ["XLMRobertaForMaskedLM", "DistilBertForSequenceClassification"])
def test_size_command_counts_the_checkpoint(tmp_path, capsys, case):
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    capsys.readouterr()
    assert main(["size", str(tmp_path), "--seq", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == sum(p.numel() for p in reference.parameters())
    assert report["params_breakdown"]["embeddings/positions"] == reference.config.max_position_embeddings * 32


@pytest.mark.parametrize("case,changes,message", [
    ("RobertaModel", dict(is_decoder=True), "is_decoder=True is not supported"),
    ("RobertaModel", dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
    ("RobertaModel", dict(max_position_embeddings=2), "leaves no position past the padding rows"),
    ("XLMRobertaModel", dict(add_cross_attention=True), "add_cross_attention=True is not supported"),
    ("DistilBertForMaskedLM", dict(activation="relu"), "activation='relu' is not supported for DistilBertForMaskedLM"),
    ("DistilBertModel", dict(activation="quick_gelu"), "activation='quick_gelu' is not supported"),
    ("DistilBertForQuestionAnswering", dict(num_labels=3, id2label=None), "needs num_labels=2"),
])
def test_unsupported_options_are_one_line_errors(tmp_path, case, changes, message):
    with pytest.raises(CheckpointError, match=message) as error:
        trilogy.from_pretrained(saved(tmp_path, case, **changes))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("case,changes,tensor", [
    ("RobertaForMaskedLM", dict(max_position_embeddings=70), "roberta.embeddings.position_embeddings.weight"),
    ("XLMRobertaModel", dict(type_vocab_size=2), "embeddings.token_type_embeddings.weight"),
    ("DistilBertForSequenceClassification", dict(dim=64), "distilbert.embeddings.word_embeddings.weight"),
])
def test_config_that_disagrees_with_its_weights_is_refused(tmp_path, case, changes, tensor):
    with pytest.raises(CheckpointError, match="does not match its config.json") as error:
        trilogy.from_pretrained(saved(tmp_path, case, **changes))
    assert tensor in str(error.value)


def test_roberta_with_another_offset_has_no_equivalent(tmp_path):
    """RoBERTa's table starts at pad_token_id + 1: a model whose offset differs is not a RoBERTa."""
    ours = trilogy.from_pretrained(saved(tmp_path / "hf", "RobertaForMaskedLM"))
    other = trilogy.build(ours.config.replace(position_offset=5))
    with pytest.raises(CheckpointError, match="position_offset=5 \\(needs 2\\)"):
        other.save_pretrained(tmp_path / "ours", format="hf")


def test_saved_roberta_is_read_back_by_trilogy_bitwise(tmp_path):
    reference = hf_model("XLMRobertaForSequenceClassification")
    reference.save_pretrained(tmp_path / "hf")
    ours = trilogy.from_pretrained(tmp_path / "hf")
    perturb(ours, seed=4)
    ours.save_pretrained(tmp_path / "ours", format="hf")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "xlm-roberta"
    back = trilogy.from_pretrained(tmp_path / "ours")
    assert back.config == ours.config
    for (name, a), b in zip(back.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_roberta_mlm_head_is_gelu_whatever_the_layers_use(tmp_path):
    """RoBERTa's lm_head applies GELU even when hidden_act is another activation (unlike BERT's and DistilBERT's)."""
    torch.manual_seed(0)
    reference = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**ROBERTA, hidden_act="relu")).eval()
    perturb(reference, seed=1)
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    assert ours.config.activation == "relu"
    assert max(differences(ours, reference, make_inputs(ours.config)).values()) <= TOLERANCE
