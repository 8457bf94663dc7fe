"""What one seed of the demo found, gathered from its state: each architecture's pre-training (what it spent,
its loss curve) and each task's scores per architecture with the FLOPs each fine-tuning spent."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..data.tasks import baseline_score
from ..train.metrics import MetricsLog
from .budget import read_timeline
from .families import ARCHITECTURES, LABELS, PRETRAINING, count_parameters
from .state import finetune_unit, pretrain_unit

if TYPE_CHECKING:
    from .run import Setup
    from .state import DemoState


def curve(folder: Path) -> list[dict]:
    """Training loss per step with the tokens, FLOPs and seconds at the end of that step."""
    timeline = {r["step"]: r for r in read_timeline(folder / "timeline.jsonl")}
    points = []
    for record in MetricsLog(folder / "metrics.jsonl").records():
        at = timeline.get(record.get("step"))
        if at is not None and record.get("loss") is not None and record.get("split", "train") == "train":
            points.append(dict(step=record["step"], loss=record["loss"], tokens=at["tokens"], flops=at["flops"],
                               seconds=at["seconds"]))
    return points


def seed_results(setup: Setup, state: DemoState, interrupted: bool) -> dict:
    """The seed's pre-training rows and task results (``tasks``: one entry per task, ``results`` per
    architecture: score, FLOPs, steps, seconds, status, and the reason of an n/a cell)."""
    pretraining = []
    for arch in ARCHITECTURES:
        init = setup.options.checkpoints.get(arch)  # a checkpoint's own size, else the demo's
        params = setup.pretrained(arch).num_parameters() if init else count_parameters(setup.configs[arch])
        row = dict(arch=arch, label=LABELS[arch], objective=PRETRAINING[arch], params=params, init=init)
        if row["init"] is None:
            record = state.unit(pretrain_unit(arch))
            row.update(status=record.status, steps=record.steps, flops=record.flops, tokens=record.tokens,
                       seconds=record.seconds, curve=curve(setup.out / pretrain_unit(arch)))
        pretraining.append(row)
    tasks = []
    for task in setup.tasks:
        results = {}
        for arch in ARCHITECTURES:
            record = state.unit(finetune_unit(task.name, arch))
            reason = record.reason
            if reason is None and record.score is None:
                reason = f"not evaluated ({record.status})"
            results[arch] = dict(score=record.score, flops=record.flops, steps=record.steps, seconds=record.seconds,
                                 eval_seconds=record.eval_seconds, status=record.status, reason=reason)
        tasks.append(dict(name=task.name, kind=task.kind, metric=task.metric, higher_is_better=task.higher_is_better,
                          baseline_name=task.baseline, baseline=baseline_score(task), notebook_says=task.claimed_family
                          or None, claim=task.claim, source=task.source, train_rows=len(task.train),
                          eval_rows=len(task.eval), results=results))
    return dict(seed=setup.options.seed, out=str(setup.out), interrupted=interrupted, precision=state.precision,
                device=str(setup.dist.device), budget=None if state.budget is None else vars(state.budget),
                pretraining=pretraining, tasks=tasks)
