"""The demo's budget: each unit stops at the step nearest its quota of FLOPs (counted per batch by
``trilogy.sizing``), the quota is planned so the probed step costs fill the time asked for, the counts survive a
resume; ``--precision auto``; the options' errors."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trilogy
from trilogy import build
from trilogy.demo.budget import BudgetedBatches, StopRequest, StopTraining, read_timeline
from trilogy.demo.families import SIZES
from trilogy.demo.state import DemoOptions
from trilogy.demo.training import Probe, equal_quota, plan
from trilogy.objectives import Batches
from trilogy.sizing import batch_rows, training_flops
from trilogy.train.precision import cpu_has_fast_bf16, denormals_flushed, resolve_precision

from .test_data import sample_documents, trained_tokenizers


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return trained_tokenizers()


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return sample_documents()


def pairs(documents):
    return [(line, line.split()[0]) for d in documents for line in d.splitlines() if len(line.split()) > 3]


def drain(stream: BudgetedBatches) -> int:
    """Take batches as the training loop would, until the stream stops; returns the reason."""
    with pytest.raises(StopTraining) as stopped:
        while True:
            next(stream)
    return stopped.value.reason


def test_a_unit_stops_at_the_step_nearest_its_flops_quota(tmp_path, tokenizers, documents):
    """Seq2seq batches vary in size: every step's FLOPs are sizing's count of that batch, and the stream stops
    where one more step would end further from the quota than stopping."""
    model = build("tiny-t5", vocab_size=tokenizers["encoder-decoder"].get_vocab_size())
    data = pairs(documents)
    costs = [training_flops(model.config, batch_rows(b))
             for b in itertools.islice(Batches("seq2seq", data, tokenizers["encoder-decoder"], 32, 4, seed=3), 12)]
    assert len(set(costs)) > 1  # the batches differ
    quota = sum(costs[:5]) + 0.4 * costs[5]
    stream = BudgetedBatches(Batches("seq2seq", data, tokenizers["encoder-decoder"], 32, 4, seed=3), model.config,
                             "flops", quota, math.inf, StopRequest(), tmp_path / "timeline.jsonl")
    assert drain(stream) == "done"
    assert stream.steps == 5 and stream.counts["flops"] == sum(costs[:5])
    assert [r["flops"] for r in read_timeline(tmp_path / "timeline.jsonl")] == \
        [sum(costs[:i]) for i in range(1, 6)]
    stream = BudgetedBatches(Batches("seq2seq", data, tokenizers["encoder-decoder"], 32, 4, seed=3), model.config,
                             "flops", sum(costs[:5]) + 0.6 * costs[5], math.inf, StopRequest(),
                             tmp_path / "other.jsonl")
    drain(stream)
    assert stream.steps == 6


def test_counts_and_clock_survive_a_resume(tmp_path, tokenizers, documents):
    model = build("tiny-bert", vocab_size=tokenizers["encoder"].get_vocab_size())

    def stream():
        return BudgetedBatches(Batches("mlm", documents, tokenizers["encoder"], 32, 4, seed=1), model.config,
                               "flops", math.inf, math.inf, StopRequest(), tmp_path / "timeline.jsonl")

    whole = stream()
    for _ in range(6):
        next(whole)
    first = stream()
    for _ in range(3):
        next(first)
    saved = first.state_dict()
    resumed = stream()
    resumed.load_state_dict(saved)
    for _ in range(3):
        next(resumed)
    assert resumed.counts == whole.counts and resumed.steps == 6
    assert whole.counts["loss_tokens"] < 0.3 * whole.counts["tokens"]  # MLM: ~15% of the tokens bear the loss


def test_stops_on_ctrl_c_and_at_its_deadline(tmp_path, tokenizers, documents):
    model = build("tiny-gpt2", vocab_size=tokenizers["decoder"].get_vocab_size())
    data = Batches("clm", documents, tokenizers["decoder"], 32, 4)
    stop = StopRequest()
    stream = BudgetedBatches(data, model.config, "flops", math.inf, math.inf, stop, tmp_path / "a.jsonl")
    next(stream)
    stop.requested = True
    assert drain(stream) == "interrupted"
    late = BudgetedBatches(data, model.config, "tokens", math.inf, -1.0, StopRequest(), tmp_path / "b.jsonl")
    assert drain(late) == "deadline"
    with pytest.raises(ValueError, match="budget counts one of"):
        BudgetedBatches(data, model.config, "joules", 1.0, 1.0, StopRequest(), tmp_path / "c.jsonl")


PROBES = [Probe(0.12, 2.0e10, 2048), Probe(0.10, 1.5e10, 2048), Probe(0.07, 0.9e10, 2048),
          Probe(0.20, 2.4e10, 4000)]


def test_the_plan_gives_every_architecture_the_same_flops_and_fills_the_time():
    """``equal_quota`` is what the demo plans pre-training with, and each task's fine-tuning."""
    options = DemoOptions(minutes=10)
    quota = equal_quota(options.pretrain_seconds, PROBES)
    plans = [plan(probe, quota, timed=True) for probe in PROBES]
    assert sum(p.planned_seconds for p in plans) == pytest.approx(options.pretrain_seconds, rel=0.02)
    assert all(p.max_steps * probe.flops_per_step == pytest.approx(quota, rel=0.01)
               for p, probe in zip(plans, PROBES, strict=True))
    assert options.finetune_seconds == pytest.approx(options.pretrain_seconds / len(options.tasks))


def test_bad_options():
    with pytest.raises(ValueError, match="--size must be one of"):
        DemoOptions(size="huge")
    with pytest.raises(ValueError, match="--precision"):
        DemoOptions(precision="fp8")
    with pytest.raises(ValueError, match="no task 'sentiment'"):
        DemoOptions(tasks=["sentiment"])
    with pytest.raises(ValueError, match="--init takes ARCH=PATH_OR_NAME"):
        DemoOptions(init=["bert=somewhere"])
    assert DemoOptions(init=["encoder=a/b=c"]).checkpoints == {"encoder": "a/b=c"}


def test_auto_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    flags = open("/proc/cpuinfo").read().split()  # noqa: SIM115 - the independent source: the kernel's flags
    assert cpu_has_fast_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="--precision"):
        resolve_precision("fp16", cpu)


def test_denormals_are_flushed_only_inside():
    tiny = torch.tensor([1e-39])  # a denormal in fp32
    with denormals_flushed():
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) > 0.0
    with denormals_flushed(enabled=False):
        assert float(tiny * 1.0) > 0.0


@pytest.mark.parametrize("workers_first", [False, True])
def test_a_flush_set_before_parallel_work_reaches_every_worker_thread(workers_first):
    """What ``trilogy train`` and ``trilogy demo`` rely on, in a fresh process with two threads: set before the
    thread pool starts, the flush holds in every worker's share of an elementwise op; set after, only in the
    main thread's (which is why the commands set it at their start)."""
    script = f"""
import numpy, torch
from trilogy.train.precision import denormals_flushed
torch.set_num_threads(2)
denormals = torch.from_numpy(numpy.full(1 << 22, 1e-39, dtype=numpy.float32))  # made without torch's threads
if {workers_first}:
    denormals * 1.0  # starts the thread pool
with denormals_flushed():
    print(int((denormals * 1.0 != 0).sum()))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(trilogy.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert (int(out.stdout) > 0) == workers_first


def test_without_minutes_the_budget_is_fixed_flops():
    """The default budget does not depend on the machine: the size's FLOPs, or those given."""
    tiny = SIZES["tiny"]
    assert DemoOptions().budget_flops(tiny) == (tiny.pretrain_flops, tiny.finetune_steps)
    assert DemoOptions(pretrain_flops=5e9, finetune_steps=3).budget_flops(tiny) == (5e9, 3)
    with pytest.raises(ValueError, match="cannot be given with --pretrain-flops"):
        DemoOptions(minutes=2, finetune_steps=3)
    with pytest.raises(ValueError, match="--pretrain-flops must be positive"):
        DemoOptions(pretrain_flops=0)
    # a slow or busy machine takes longer over a FLOP budget; only a plan made to fit a time has a deadline
    assert plan(PROBES[0], 1e12, timed=False).deadline_s == math.inf
    assert plan(PROBES[0], 1e12, timed=True).deadline_s < math.inf
