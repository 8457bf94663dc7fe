"""One unit's training: probe its cost on this machine, plan its steps for its quota of FLOPs, then run
``trilogy.train.loop.train`` on it until the quota is spent, resumable, stoppable between steps.

The unit's folder is the loop's output folder: a checkpoint ``trilogy.from_pretrained`` loads (config.json,
model.safetensors, tokenizer.json), ``checkpoints/``, ``metrics.jsonl``, plus the demo's ``timeline.jsonl``
(tokens, FLOPs and seconds at the end of each step). Under ``torchrun`` every rank trains, the main rank writes
the folder, and a probe's figures are the global batch's and the main rank's step time.
"""

from __future__ import annotations

import copy
import itertools
import math
import shutil
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..sizing import batch_rows, training_flops
from ..train.distributed import Distributed
from ..train.loop import TrainSettings, tokens_seen, train
from ..train.state import latest_checkpoint
from .budget import OVERRUN, BudgetedBatches, StopRequest, StopTraining, main_rank_value, read_timeline

CALIBRATION_STEPS = 6  # the first is a warm-up; the median of the others is the step time
PROBE_BATCHES = 16  # the mean FLOPs and tokens per step are taken over the unit's first batches
PLAN_SHARE = 0.85  # of a unit's seconds planned as training steps; the rest covers checkpoints
DEADLINE_SLACK_S = 30  # a unit's deadline also leaves this for its first step's warm-up
CHECKPOINT_EVERY_S = 20  # checkpoints at least this often and at least CHECKPOINTS_PER_UNIT times: a resumed
CHECKPOINTS_PER_UNIT = 4  # unit repeats little training, and a long one does not spend its time writing them
#: the masked LM's rate in the MLM recipe (docs/training.md); at 2e-3 it sat at the unigram guess; T5's, the
#: docstring recipe's (``make recipe-t5-docstrings``)
LEARNING_RATES = {"mlm": 1e-3, "span": 3e-3}
LEARNING_RATE = 2e-3
FINE_TUNING_RATE = 3e-3  # against 1e-3: plurals 0.645 -> 0.70 (decoder), span 0.45 -> 0.49 (encoder)


@dataclass
class Job:
    """Everything one unit's training needs: its model (with ``.tokenizer``), a seeded resumable batch stream,
    the loss the loop minimises."""

    name: str
    folder: Path
    model: torch.nn.Module
    batches: Callable[[int], object]  # seed -> resumable batches (``trilogy.objectives.Batches`` or the like)
    loss: Callable  # the loop's loss_fn
    learning_rate: float
    seed: int
    dist: Distributed
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)


def _save(model, folder) -> None:
    with warnings.catch_warnings():  # rotary encoders have no transformers class (docs/checkpoints.md)
        warnings.filterwarnings("ignore", message="no Hugging Face equivalent")
        model.save_pretrained(folder)


@dataclass
class Probe:
    """What one training step of a unit costs on this machine: seconds (measured; under torchrun the main
    rank's), and FLOPs and tokens (the mean over its first global batches)."""

    step_seconds: float
    flops_per_step: float
    tokens_per_step: float


def probe(job: Job) -> Probe:
    """A few steps of the real loop on a copy of the model, in a scratch folder that is removed afterwards;
    the FLOPs and tokens of the unit's first ``PROBE_BATCHES`` batches (all ranks' rows: every rank plans
    the same steps)."""
    dist = job.dist
    scratch = job.folder / ".calibration"
    if dist.is_main:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True, exist_ok=True)
    batches = BudgetedBatches(job.batches(job.seed + 1), job.model.config, "seconds", math.inf, math.inf,
                              StopRequest(), scratch / "timeline.jsonl", dist)
    settings = TrainSettings(max_steps=CALIBRATION_STEPS, lr=job.learning_rate, warmup_steps=1,
                             precision=job.precision)
    train(copy.deepcopy(job.model), batches, job.loss, settings, scratch, lambda model, folder: None, None, dist)
    batches.finish()
    step_seconds = 0.0
    if dist.is_main:  # the timeline is the main rank's
        seconds = [r["seconds"] for r in read_timeline(scratch / "timeline.jsonl")]
        shutil.rmtree(scratch)
        durations = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
        step_seconds = statistics.median(durations) if durations else seconds[-1]
    first = list(itertools.islice(job.batches(job.seed), PROBE_BATCHES))
    flops, tokens = dist.sum(torch.tensor([sum(training_flops(job.model.config, batch_rows(b)) for b in first),
                                           sum(tokens_seen(b) for b in first)])).tolist()
    return Probe(step_seconds=main_rank_value(dist, step_seconds), flops_per_step=flops / len(first),
                 tokens_per_step=tokens / len(first))


@dataclass
class Plan:
    """How a unit spends its quota of FLOPs: the loop's step count and the seconds that should take."""

    quota: float
    max_steps: int
    planned_seconds: float
    timed: bool = False  # planned to fit a time (``--minutes``): then it also stops at a deadline

    @property
    def deadline_s(self) -> float:
        """Past this many seconds of training the unit stops; a FLOP budget has none, so that a busy machine
        changes how long it takes, not what it computes."""
        return OVERRUN * self.planned_seconds / PLAN_SHARE + DEADLINE_SLACK_S if self.timed else math.inf


def plan(probed: Probe, quota: float, timed: bool) -> Plan:
    """Steps for ``quota`` FLOPs at the probe's mean cost. Where batches vary (padded rows), the unit also stops
    at the step that brings it nearest its quota. ``timed``: the quota was planned to fit a time."""
    steps = max(1, round(quota / probed.flops_per_step))
    return Plan(quota, steps, steps * probed.step_seconds, timed)


def equal_quota(seconds: float, probes: list[Probe]) -> float:
    """The FLOPs each unit can get so that all of them together train for ``seconds`` at the probed costs."""
    return seconds / sum(p.step_seconds / p.flops_per_step for p in probes)


def settings_for(max_steps: int, step_seconds: float, lr: float, precision: str) -> TrainSettings:
    """The loop's settings: warmup a tenth of the steps (at most 100), checkpoints spaced in time."""
    return TrainSettings(
        max_steps=max_steps, lr=lr, warmup_steps=min(100, max(1, max_steps // 10)),
        save_every=min(max(1, round(CHECKPOINT_EVERY_S / step_seconds)), max(1, max_steps // CHECKPOINTS_PER_UNIT)),
        keep_last=1, precision=precision,
    )


def train_unit(job: Job, planned: Plan, step_seconds: float, stop: StopRequest, resume: bool) -> dict:
    """Train the unit for ``planned.max_steps`` steps or until its quota is spent, Ctrl-C, or its deadline.

    Returns:
        ``status`` ("done", "interrupted" or "deadline"), ``steps``, ``tokens``, ``flops``, ``loss_tokens``,
        ``seconds`` (its training clock).
    """
    resume = resume and latest_checkpoint(job.folder) is not None
    if not resume and job.dist.is_main:  # a fresh start: nothing of an earlier attempt may leak into the curves
        for name in ("metrics.jsonl", "timeline.jsonl"):
            (job.folder / name).unlink(missing_ok=True)
        shutil.rmtree(job.folder / "checkpoints", ignore_errors=True)
    job.folder.mkdir(parents=True, exist_ok=True)
    batches = BudgetedBatches(job.batches(job.seed), job.model.config, "flops", planned.quota, planned.deadline_s,
                              stop, job.folder / "timeline.jsonl", job.dist)
    torch.manual_seed(job.seed)
    try:
        settings = settings_for(planned.max_steps, step_seconds, job.learning_rate, job.precision)
        train(job.model, batches, job.loss, settings, job.folder, _save, None, job.dist, resume=resume,
              run_info={"demo_unit": job.name})
        status = "done"
    except StopTraining as stopped:
        status = stopped.reason
        if job.dist.is_main:
            _save(job.model, job.folder)  # what was trained up to the last complete step
    batches.finish()
    job.dist.barrier()  # the other ranks read the unit's folder once the main rank has written it
    return dict(status=status, steps=batches.steps, **batches.counts, seconds=round(batches.seconds, 2))
