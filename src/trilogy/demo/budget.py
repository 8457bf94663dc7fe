"""Driving the training loop under a budget, and stopping it cleanly on Ctrl-C.

A unit's budget is a quota of one *measure*: training FLOPs (``trilogy.sizing.training_flops`` of every batch,
at its real lengths, padding excluded), tokens seen (real input tokens, encoder and decoder), or seconds of
wall-clock. ``trilogy.train.loop.train`` runs a fixed number of steps (its learning-rate schedule needs the
total), so the demo plans that number from a measured probe, and wraps the loop's batch stream in
``BudgetedBatches``: the loop asks it for one batch per step, which is the one moment between two steps where
stopping leaves the weights consistent. There it ends the unit once the quota is spent (``BudgetReached``, a
normal end), when Ctrl-C was pressed, or when the unit has run well past the seconds planned for it (the
machine got slower than the probe measured). It records, at the end of each step, the tokens, FLOPs,
loss-bearing tokens and seconds so far, for the loss curves, and saves those counts and the clock with the
data position, so a resumed run continues them.

Under ``torchrun`` each rank's stream serves its rows of each global batch: the counts are summed over the
ranks at each step, and every rank keeps the main rank's clock, so that all of them stop at the same step (one
rank stopping alone would leave the others waiting on it) with the counts of one process; the main rank writes
the timeline.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from ..errors import TrilogyError
from ..sizing import batch_rows, training_flops
from ..train.distributed import Distributed
from ..train.loop import tokens_seen

OVERRUN = 1.25  # a unit is stopped once it has used this multiple of the seconds planned for it
MEASURES = ("flops", "tokens", "seconds")  # what a budget counts; also the timeline's fields
COUNTS = ("tokens", "flops", "loss_tokens")  # what the stream adds up per batch (seconds come from the clock)


class StopTraining(Exception):
    """Raised from the batch stream before a step starts; ``reason`` is "done" (the quota is spent),
    "interrupted" or "deadline"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StopRequest:
    """Set by the first Ctrl-C; the demo finishes the current step, or the current phase, then stops."""

    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def first_ctrl_c_requests_stop() -> Iterator[StopRequest]:
    """While active, the first Ctrl-C sets ``StopRequest.requested`` instead of raising; a second one raises
    KeyboardInterrupt as usual."""
    request = StopRequest()

    def handler(signum, frame):
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True
        print("\nCtrl-C: stopping after this step and writing a partial report (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


class BudgetedBatches:
    """The loop's batch stream, with a clock, FLOP and token counts, and a way to stop between steps.

    Args:
        batches: a resumable ``trilogy.objectives.Batches``.
        config: the model's ``ModelConfig``, to count each batch's training FLOPs.
        measure: what ``quota`` counts, one of ``MEASURES``.
        quota: the unit's budget in that measure; no step starts once one more step would end further from it
            than stopping now (``inf``: no quota).
        deadline_s: past this many seconds of training, no step starts either (``inf``: none).
        stop: the Ctrl-C flag.
        timeline: a JSONL file that gets ``{"step", "tokens", "flops", "loss_tokens", "seconds"}`` when each
            step has ended.
        dist: the ranks under torchrun (default: one process); ``batches`` then serves this rank's rows.
    """

    def __init__(self, batches, config, measure: str, quota: float, deadline_s: float, stop: StopRequest,
                 timeline: Path, dist: Distributed | None = None):
        if measure not in MEASURES:
            raise TrilogyError(f"a budget counts one of {', '.join(MEASURES)}, got {measure!r}")
        self.batches, self.config, self.measure, self.quota = batches, config, measure, quota
        self.deadline_s, self.stop, self.timeline = deadline_s, stop, Path(timeline)
        self.dist = dist or Distributed(0, 1, torch.device("cpu"))
        self.steps, self.seconds = 0, 0.0
        self.counts = dict.fromkeys(COUNTS, 0)
        self._last_tick: float | None = None
        self._last_cost = 0.0  # of the last step, in the quota's measure

    @property
    def spent(self) -> float:
        """How much of the quota's measure the steps so far took."""
        return self.seconds if self.measure == "seconds" else self.counts[self.measure]

    def __iter__(self) -> BudgetedBatches:
        return self

    def __next__(self):
        self._tick()
        self.seconds = main_rank_value(self.dist, self.seconds)  # one clock: the ranks stop at the same step
        if self.steps:
            self._record()
        if self.stop.requested:
            raise StopTraining("interrupted")
        if self.spent + self._last_cost / 2 >= self.quota:  # one more step would end further from the quota
            raise StopTraining("done")
        if self.seconds > self.deadline_s:
            raise StopTraining("deadline")
        batch = next(self.batches)
        spent = self.spent
        self.steps += 1
        counts = [tokens_seen(batch), training_flops(self.config, batch_rows(batch)),
                  int((batch["labels"] != -100).sum())]
        for name, total in zip(COUNTS, self.dist.sum(torch.tensor(counts)).tolist(), strict=True):
            self.counts[name] += int(total)  # all ranks' rows: the global batch's
        self._last_cost = self.spent - spent  # 0 for seconds: the clock counts them after the step
        return batch

    def finish(self) -> None:
        """Record the end of the last step (the loop does not ask for a batch after it)."""
        self._tick()
        self._record()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last_tick is not None:
            self.seconds += now - self._last_tick
        self._last_tick = now

    def _record(self) -> None:
        if not self.dist.is_main:
            return
        with self.timeline.open("a") as file:
            file.write(json.dumps({"step": self.steps, **self.counts, "seconds": round(self.seconds, 6)}) + "\n")

    def state_dict(self) -> dict:
        self._tick()
        return {"data": self.batches.state_dict(), "steps": self.steps, **self.counts, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint: the data position, the step count, the counts and the clock. Timeline
        records from the checkpoint's step on are dropped: later steps are trained again, and the checkpoint's
        own step is recorded again with the clock it saved (the time spent after it is not counted)."""
        self.batches.load_state_dict(state["data"])
        self.steps, self.seconds = state["steps"], state["seconds"]
        self.counts = {name: state[name] for name in COUNTS}
        self._last_tick = None
        if self.dist.is_main:
            kept = [r for r in read_timeline(self.timeline) if r["step"] < self.steps]
            self.timeline.write_text("".join(json.dumps(r) + "\n" for r in kept))


def main_rank_value(dist: Distributed, value: float) -> float:
    """The main rank's ``value`` on every rank (a collective under torchrun: every rank takes part)."""
    return float(dist.sum(torch.tensor(value if dist.is_main else 0.0)))


def read_timeline(path: Path) -> list[dict]:
    """The records of a timeline file, one per step (the last record of a step wins)."""
    path = Path(path)
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]
