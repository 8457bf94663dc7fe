"""The size calculator against independent measurement: parameter counts of built models, FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on a real forward and backward, and the peak memory of a real
training step (AdamW) and inference pass, measured with torch's CPU allocator profiling
(``torch.profiler(profile_memory=True)``: the high-water mark of bytes allocated during the step, plus the
weights that were already there)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from trilogy.cli import main
from trilogy.config import PRESETS, ModelConfig
from trilogy.models import build_model
from trilogy.sizing import count_parameters, flops_breakdown, memory_breakdown

TINY = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameters_match_built_model(name):
    config = ModelConfig.from_preset(name)
    with torch.device("meta"):
        model = build_model(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("changes", [
    dict(head="sequence-classification", num_labels=3), dict(head="token-classification"),
    dict(head="pretraining"), dict(tie_embeddings=False, head_bias=True), dict(gated_mlp=True, bias=False),
])
def test_parameters_match_variants(changes):
    config = ModelConfig.from_preset("tiny-bert" if "head" in changes else "tiny-gpt2", **changes)
    assert count_parameters(config) == build_model(config).num_parameters()


def inputs(config, batch, seq, src):
    ids = torch.randint(3, config.vocab_size, (batch, seq))
    source = torch.randint(3, config.vocab_size, (batch, src)) if config.arch == "encoder-decoder" else None
    return ids, source


def run(model, ids, source, explicit):
    if source is not None:
        return model.run(source, ids, return_attention=explicit)
    return model.run(ids, return_attention=explicit)


@pytest.mark.parametrize("name,changes", [(n, {}) for n in TINY] + [
    ("tiny-bert", dict(head="sequence-classification")), ("tiny-bert", dict(head="pretraining")),
    ("tiny-t5", dict(n_decoder_layers=3, gated_mlp=True)),
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


def measure(config, batch, seq, src, attention):
    """Measured peak bytes of one AdamW training step and one inference pass, weights included."""
    torch.manual_seed(0)
    model = build_model(config)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    ids, source = inputs(config, batch, seq, src)
    optimizer = torch.optim.AdamW(model.parameters())
    explicit = attention == "explicit"

    def train_step():
        logits = run(model, ids, source, explicit).logits
        F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def inference():
        with torch.no_grad():
            run(model, ids, source, explicit)

    model.train()
    training = measured_peak(train_step) + weights
    model.eval()
    return training, measured_peak(inference) + weights


def check_memory(config, batch, seq, src, attention):
    src = src if config.arch == "encoder-decoder" else None
    training, inference = measure(config, batch, seq, src, attention)
    predicted_training = memory_breakdown(config, batch, seq, src, training=True, attention=attention)["total"]
    predicted_inference = memory_breakdown(config, batch, seq, src, training=False, attention=attention)["total"]
    assert predicted_training == pytest.approx(training, rel=0.20), (predicted_training, training)
    assert predicted_inference == pytest.approx(inference, rel=0.20), (predicted_inference, inference)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("name", TINY)
def test_memory_matches_measured_peak_tiny(name, attention):
    # SDPA's fused kernel runs only without attention dropout on CPU; the explicit path keeps dropout on
    changes = dict(dropout=0.0) if attention == "sdpa" else {}
    check_memory(ModelConfig.from_preset(name, **changes), batch=2, seq=128, src=64, attention=attention)


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
