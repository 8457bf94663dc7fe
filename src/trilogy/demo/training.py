"""One unit's training: plan its steps from a measured step time, then run ``trilogy.train.loop.train`` on it
under its wall-clock allowance, resumable, stoppable between steps.

The unit's folder is the loop's output folder: a checkpoint ``trilogy.from_pretrained`` loads (config.json,
model.safetensors, tokenizer.json), ``checkpoints/``, ``metrics.jsonl``, plus the demo's ``timeline.jsonl``
(tokens and seconds at the end of each step).
"""

from __future__ import annotations

import copy
import shutil
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..objectives import Batches, compute_loss
from ..train.distributed import Distributed
from ..train.evaluate import evaluate
from ..train.loop import TrainSettings, train
from ..train.state import latest_checkpoint
from .budget import BudgetedBatches, StopRequest, StopTraining, read_timeline
from .families import Unit
from .memory import peak_from_now

CALIBRATION_STEPS = 4  # the first is a warm-up; the median of the others is the step time
PLAN_SHARE = 0.85  # of the allowance planned as training steps; the rest covers evaluations and checkpoints
CHECKPOINT_EVERY_S = 20  # checkpoints at least this often and at least CHECKPOINTS_PER_UNIT times: a resumed
CHECKPOINTS_PER_UNIT = 4  # unit repeats little training, and a long one does not spend its time writing them
EVALUATIONS_PER_UNIT = 3  # on the validation split, for the curves; never more often than every EVAL_GAP_S
EVAL_GAP_S = 20
LEARNING_RATE = 2e-3
#: the masked LM's rate in the README's MLM recipe; at 2e-3 (learned positions) it sat at the unigram guess
LEARNING_RATES = {"mlm": 1e-3}


@dataclass
class Job:
    """Everything one unit's training needs."""

    unit: Unit
    folder: Path
    model: torch.nn.Module  # with .tokenizer set
    corpus: object  # trilogy.data.Corpus of the unit's data kind
    seq_len: int
    batch_size: int
    eval_batches: int
    seed: int
    allowance_s: float
    dist: Distributed

    @property
    def learning_rate(self) -> float:
        return LEARNING_RATES.get(self.unit.objective, LEARNING_RATE)

    def batches(self, seed: int) -> Batches:
        return Batches(self.unit.objective, self.corpus.train, self.model.tokenizer, self.seq_len, self.batch_size,
                       seed)

    def loss(self, model, batch):
        return compute_loss(self.unit.objective, model, batch)

    def evaluate(self, model) -> dict:
        return evaluate(model, self.unit.objective, self.corpus, self.model.tokenizer, self.seq_len,
                        self.batch_size, self.eval_batches, self.dist)


def _save(model, folder) -> None:
    with warnings.catch_warnings():  # BERT's rotary positions have no transformers class; the README says so
        warnings.filterwarnings("ignore", message="no Hugging Face equivalent")
        model.save_pretrained(folder)


def measure_step_seconds(job: Job) -> float:
    """Seconds per training step of this unit on this machine: a few steps of the real loop on a copy of the
    model, in a scratch folder that is removed afterwards."""
    scratch = job.folder / ".calibration"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    batches = BudgetedBatches(job.batches(job.seed + 1), float("inf"), StopRequest(), scratch / "timeline.jsonl")
    settings = TrainSettings(max_steps=CALIBRATION_STEPS, lr=job.learning_rate, warmup_steps=1)
    train(copy.deepcopy(job.model), batches, job.loss, settings, scratch, _save, None, job.dist)
    batches.finish()
    seconds = [r["seconds"] for r in read_timeline(scratch / "timeline.jsonl")]
    shutil.rmtree(scratch)
    durations = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    return statistics.median(durations) if durations else seconds[-1]


def plan_steps(step_seconds: float, allowance_s: float) -> int:
    return max(1, int(PLAN_SHARE * allowance_s / step_seconds))


def settings_for(max_steps: int, step_seconds: float, lr: float) -> TrainSettings:
    """The loop's settings: warmup a tenth of the steps (at most 100), checkpoints and evaluations spaced in
    time (an interval past ``max_steps`` means only at the end)."""

    def steps_in(seconds: float) -> int:
        return max(1, round(seconds / step_seconds))

    return TrainSettings(
        max_steps=max_steps, lr=lr, warmup_steps=min(100, max(1, max_steps // 10)),
        save_every=min(steps_in(CHECKPOINT_EVERY_S), max(1, max_steps // CHECKPOINTS_PER_UNIT)), keep_last=1,
        eval_every=max(max_steps // EVALUATIONS_PER_UNIT, steps_in(EVAL_GAP_S)),
    )


def train_unit(job: Job, max_steps: int, step_seconds: float, stop: StopRequest, resume: bool) -> dict:
    """Train the unit for ``max_steps`` steps (planned at ``step_seconds`` each), or until Ctrl-C or its
    deadline.

    Returns:
        ``status`` ("done", "interrupted" or "deadline"), ``steps``, ``tokens``, ``seconds`` (its training
        clock), ``peak_memory_bytes`` (None where it cannot be measured).
    """
    resume = resume and latest_checkpoint(job.folder) is not None
    if not resume:  # a fresh start: nothing of an earlier attempt may leak into the curves
        for name in ("metrics.jsonl", "timeline.jsonl"):
            (job.folder / name).unlink(missing_ok=True)
        shutil.rmtree(job.folder / "checkpoints", ignore_errors=True)
    job.folder.mkdir(parents=True, exist_ok=True)
    batches = BudgetedBatches(job.batches(job.seed), job.allowance_s, stop, job.folder / "timeline.jsonl")
    peak = peak_from_now(job.dist.device)
    torch.manual_seed(job.seed)
    try:
        settings = settings_for(max_steps, step_seconds, job.learning_rate)
        train(job.model, batches, job.loss, settings, job.folder, _save, job.evaluate, job.dist, resume=resume,
              run_info={"demo_unit": job.unit.name})
        status = "done"
    except StopTraining as stopped:
        status = stopped.reason
        job.model.save_pretrained(job.folder)  # what was trained up to the last complete step
    batches.finish()
    return dict(status=status, steps=batches.steps, tokens=batches.tokens, seconds=round(batches.seconds, 2),
                peak_memory_bytes=peak())
