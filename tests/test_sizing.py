"""The size calculator against independent measurement: parameter counts of built models, FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on a real forward and backward, and the peak memory of a real
training step (AdamW, the loss fused with the head as ``trilogy train`` runs it) and inference pass, measured
with torch's CPU allocator profiling (``torch.profiler(profile_memory=True)``: the high-water mark of bytes
allocated during the step, plus the weights that were already there). The training modes (checkpointing, bf16
autocast, FSDP) are checked in ``test_sizing_modes.py`` with the helpers here."""

from __future__ import annotations

import json

import pytest
import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from trilogy.cli import main
from trilogy.config import PRESETS, ModelConfig
from trilogy.models import build_model
from trilogy.sizing import (
    batch_rows,
    count_parameters,
    flops_breakdown,
    labelled_rows,
    memory_breakdown,
    training_flops,
)

TINY = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameters_match_built_model(name):
    config = ModelConfig.from_preset(name)
    with torch.device("meta"):
        model = build_model(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())


TASK_HEADS = [dict(head="sequence-classification", num_labels=3), dict(head="token-classification", num_labels=5),
              dict(head="question-answering")]
#: RoBERTa's and DistilBERT's options on the BERT preset: a position table past the padding rows and one token
#: type; no token types and a ReLU pooler
ENCODER_OPTIONS = [dict(position_offset=2, positions_from_mask=True, type_vocab_size=1, head="sequence-classification"),
                   dict(type_vocab_size=0, pooler_activation="relu", head="sequence-classification")]


@pytest.mark.parametrize("name,changes", [("tiny-bert", c) for c in TASK_HEADS + ENCODER_OPTIONS + [
    dict(head="pretraining")]] + [
    (name, c) for name in ("tiny-gpt2", "tiny-llama") for c in TASK_HEADS] + [
    ("tiny-gpt2", dict(tie_embeddings=False, head_bias=True)), ("tiny-gpt2", dict(gated_mlp=True, bias=False)),
])
def test_parameters_match_variants(name, changes):
    config = ModelConfig.from_preset(name, **changes)
    assert count_parameters(config) == build_model(config).num_parameters()


def inputs(config, batch, seq, src):
    ids = torch.randint(3, config.vocab_size, (batch, seq))
    source = torch.randint(3, config.vocab_size, (batch, src)) if config.arch == "encoder-decoder" else None
    return ids, source


def run(model, ids, source, explicit, labels=None):
    if source is not None:
        return model.run(source, ids, return_attention=explicit, labels=labels)
    return model.run(ids, return_attention=explicit, labels=labels)


def training_labels(config, ids):
    """Labels as trilogy's objectives give them: every token for LM; for MLM, the rows the sizing expects
    masked (15%)."""
    if config.head not in ("mlm", "pretraining"):
        return ids
    labels = torch.full_like(ids, -100)
    rows = torch.randperm(ids.numel())[:labelled_rows(config, ids.numel())]
    labels.view(-1)[rows] = ids.view(-1)[rows]
    return labels


@pytest.mark.parametrize("name,changes", [(n, {}) for n in TINY] + [
    (name, c) for name in ("tiny-bert", "tiny-gpt2", "tiny-llama") for c in TASK_HEADS] + [
    ("tiny-bert", c) for c in ENCODER_OPTIONS] + [
    ("tiny-bert", dict(head="pretraining")), ("tiny-t5", dict(n_decoder_layers=3, gated_mlp=True)),
])
def test_flops_match_flop_counter(name, changes):
    config = ModelConfig.from_preset(name, **changes)
    model = build_model(config).train()
    batch, seq, src = 2, 24, 17
    ids, source = inputs(config, batch, seq, src)
    # the explicit attention path is plain matmuls, which FlopCounterMode counts (it does not count the CPU
    # flash-attention kernel that SDPA would use)
    with FlopCounterMode(display=False) as counter:
        out = run(model, ids, source, explicit=True)
        forward = counter.get_total_flops()
        (out.logits.float().sum() + (out.pooled.sum() if out.pooled is not None else 0)).backward()
    total = counter.get_total_flops()
    predicted = sum(flops_breakdown(config, batch, seq, src if source is not None else None).values())
    assert predicted == pytest.approx(forward, rel=0.05)
    assert 3 * predicted == pytest.approx(total, rel=0.05)


@pytest.mark.parametrize("name", TINY)
def test_training_flops_of_a_padded_batch(name):
    """A padded batch's training FLOPs (labels as the objectives give them) equal the sum over its rows of what
    FlopCounterMode counts when each row trains alone, unpadded: padding is excluded, the head counts only the
    labelled rows."""
    config = ModelConfig.from_preset(name)
    model = build_model(config).train()
    lengths, sources = [19, 11, 24], [9, 17, 13]
    generator = torch.Generator().manual_seed(0)
    measured, rows = 0, []
    for seq, src in zip(lengths, sources, strict=True):
        ids, source = inputs(config, 1, seq, src)
        labels = training_labels(config, ids)
        if config.head in ("mlm", "pretraining"):  # a different number of masked rows in each sequence
            labels = torch.where(torch.rand(ids.shape, generator=generator) < 0.3, ids, -100)
        with FlopCounterMode(display=False) as counter:
            run(model, ids, source, explicit=True, labels=labels).loss.backward()
        measured += counter.get_total_flops()
        rows.append((labels, source))

    def pad(tensors, value):  # (1, L) each -> (B, max L)
        return torch.nn.utils.rnn.pad_sequence([t[0] for t in tensors], batch_first=True, padding_value=value)

    labels = pad([r[0] for r in rows], -100)
    mask = pad([torch.ones_like(r[0]) for r in rows], 0)
    batch = {"input_ids": labels.clamp(min=0), "attention_mask": mask, "labels": labels}
    if config.arch == "encoder-decoder":
        source_mask = pad([torch.ones_like(r[1]) for r in rows], 0)
        batch.update(input_ids=source_mask, attention_mask=source_mask, decoder_attention_mask=mask)
    assert batch_rows(batch) == [
        (seq, src if config.arch == "encoder-decoder" else None, int((r[0] != -100).sum()))
        for seq, src, r in zip(lengths, sources, rows, strict=True)]
    assert training_flops(config, batch_rows(batch)) == pytest.approx(measured, rel=0.05)


def measured_peak(step) -> int:
    """Bytes allocated during ``step`` at its high-water mark (allocations before it are not counted)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events, pending = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        if event.tag == _EventType.Allocation:
            events.append((event.start_time_ns, event.extra_fields.alloc_size, event.extra_fields.total_allocated))
        pending.extend(event.children)
    events.sort()
    before = events[0][2] - events[0][1]  # the counter may carry bytes from earlier profiling sessions
    return max(total for _, _, total in events) - before


def measure_training(config, batch, seq, src, attention, autocast=False, checkpointing=False) -> int:
    """Measured peak bytes of one AdamW training step, weights included. ``attention="explicit"`` asks for the
    weights (``return_attention``); "sdpa" and "math" run SDPA (math: dropout on, which sends it there on CPU)."""
    torch.manual_seed(0)
    model = build_model(config, checkpoint_activations=checkpointing).train()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    ids, source = inputs(config, batch, seq, src)
    labels = training_labels(config, ids)
    optimizer = torch.optim.AdamW(model.parameters())

    def train_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = run(model, ids, source, attention == "explicit", labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return measured_peak(train_step) + weights


def measure_inference(config, batch, seq, src, attention) -> int:
    """Measured peak bytes of one inference forward pass, weights included."""
    torch.manual_seed(0)
    model = build_model(config).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    ids, source = inputs(config, batch, seq, src)

    def inference():
        with torch.no_grad():
            run(model, ids, source, attention == "explicit")

    return measured_peak(inference) + weights


def check_training(config, batch, seq, src, attention="sdpa", precision="fp32", checkpointing=False) -> dict:
    """Assert the predicted training peak is within 20% of the measured one; return the prediction."""
    src = src if config.arch == "encoder-decoder" else None
    memory = memory_breakdown(config, batch, seq, src, precision, True, attention, checkpointing=checkpointing)
    measured = measure_training(config, batch, seq, src, attention, precision == "bf16-autocast", checkpointing)
    assert memory["total"] == pytest.approx(measured, rel=0.20), (memory["total"], measured)
    return memory


def check_memory(config, batch, seq, src, attention):
    check_training(config, batch, seq, src, attention)
    src = src if config.arch == "encoder-decoder" else None
    measured = measure_inference(config, batch, seq, src, attention)
    predicted = memory_breakdown(config, batch, seq, src, training=False, attention=attention)["total"]
    assert predicted == pytest.approx(measured, rel=0.20), (predicted, measured)


@pytest.mark.parametrize("attention", ["sdpa", "math", "explicit"])
@pytest.mark.parametrize("name", TINY)
def test_memory_matches_measured_peak_tiny(name, attention):
    # SDPA's fused kernel runs only without attention dropout on CPU; with dropout it takes its math path (in
    # training: inference has no dropout)
    config = ModelConfig.from_preset(name, **{"sdpa": dict(dropout=0.0), "math": dict(dropout=0.1)}.get(attention, {}))
    if attention == "math":
        check_training(config, batch=2, seq=128, src=64, attention=attention)
    else:
        check_memory(config, batch=2, seq=128, src=64, attention=attention)


@pytest.mark.slow
def test_memory_matches_measured_peak_t5_small():
    check_memory(ModelConfig.from_preset("t5-small", dropout=0.0), batch=2, seq=64, src=48, attention="sdpa")


@pytest.mark.slow
@pytest.mark.parametrize("name,changes", [("gpt2", {}), ("bert-base-uncased", dict(head="mlm"))])
def test_memory_matches_measured_peak_small(name, changes):
    check_memory(ModelConfig.from_preset(name, **changes), batch=2, seq=128, src=None, attention="explicit")


def trilogy(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_size_command_json_for_preset_and_checkpoint(tmp_path, capsys):
    code, out, err = trilogy(capsys, "size", "tiny-t5", "--batch", "2", "--seq", "16", "--src", "32", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params"] == build_model(ModelConfig.from_preset("tiny-t5")).num_parameters()
    assert set(report["flops_per_token"]) == {"forward", "training"}
    assert {"weights", "gradients", "optimizer", "activations", "kv_cache", "total"} <= set(report["memory_bytes"])
    model = build_model(ModelConfig.from_preset("tiny-gpt2"))
    model.save_pretrained(tmp_path / "ckpt")
    code, out, err = trilogy(capsys, "size", str(tmp_path / "ckpt"), "--inference", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params"] == model.num_parameters() and report["memory_bytes"]["kv_cache"] > 0


@pytest.mark.parametrize("args", [["nope"], ["gpt2", "--batch", "0"], ["gpt2", "--src", "3"],
                                  ["gpt2", "--dtype", "int3"]])
def test_size_command_rejects_bad_input(args, capsys):
    try:
        code, _, err = trilogy(capsys, "size", *args)
    except SystemExit as exit_:  # argparse rejects a bad choice itself, with status 2
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1].startswith("trilogy size: error"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", list(PRESETS))
def test_size_command_every_preset(name, capsys):
    for mode in ("--training", "--inference"):
        code, out, err = trilogy(capsys, "size", name, "--seq", "64", "--batch", "2", mode, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["params"] == count_parameters(ModelConfig.from_preset(name))
        assert report["memory_bytes"]["total"] >= report["memory_bytes"]["weights"] > 0
