"""Driving the training loop under a wall-clock budget, and stopping it cleanly on Ctrl-C.

``trilogy.train.loop.train`` runs a fixed number of steps (its learning-rate schedule needs the total), so the
demo plans that number from a measured step time, and wraps the loop's batch stream in ``BudgetedBatches``:
the loop asks it for one batch per step, which is the one moment between two steps where stopping leaves the
weights consistent. There it raises ``StopTraining`` when Ctrl-C was pressed or when the unit has run well
past its allowance (the machine got slower than it was when the steps were planned). It also records when
each step ended and how many tokens had gone in, for the loss curves against tokens and against time, and it
saves that count and clock with the data position, so a resumed run continues them.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..train.loop import tokens_seen

OVERRUN = 1.25  # a unit is stopped once it has used this multiple of its wall-clock allowance


class StopTraining(Exception):
    """Raised from the batch stream before a step starts; ``reason`` is "interrupted" or "deadline"."""

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
    """The loop's batch stream, with a clock, a token count and a way to stop between steps.

    Args:
        batches: a resumable ``trilogy.objectives.Batches``.
        allowance_s: the unit's wall-clock budget; past ``OVERRUN`` times it, the next step is not started.
        stop: the Ctrl-C flag.
        timeline: a JSONL file that gets ``{"step", "tokens", "seconds"}`` when each step has ended.
    """

    def __init__(self, batches, allowance_s: float, stop: StopRequest, timeline: Path):
        self.batches, self.allowance_s, self.stop, self.timeline = batches, allowance_s, stop, Path(timeline)
        self.steps, self.tokens, self.seconds = 0, 0, 0.0
        self._last_tick: float | None = None

    def __iter__(self) -> BudgetedBatches:
        return self

    def __next__(self):
        self._tick()
        if self.steps:
            self._record()
        if self.stop.requested:
            raise StopTraining("interrupted")
        if self.seconds > OVERRUN * self.allowance_s:
            raise StopTraining("deadline")
        batch = next(self.batches)
        self.steps += 1
        self.tokens += tokens_seen(batch)
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
        with self.timeline.open("a") as file:
            file.write(json.dumps({"step": self.steps, "tokens": self.tokens, "seconds": round(self.seconds, 3)})
                       + "\n")

    def state_dict(self) -> dict:
        self._tick()
        return {"data": self.batches.state_dict(), "steps": self.steps, "tokens": self.tokens,
                "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint: the data position, the step count, the tokens and the clock. Timeline
        records from the checkpoint's step on are dropped: later steps are trained again, and the checkpoint's
        own step is recorded again with the clock it saved (the time spent after it is not counted)."""
        self.batches.load_state_dict(state["data"])
        self.steps, self.tokens, self.seconds = state["steps"], state["tokens"], state["seconds"]
        self._last_tick = None
        kept = [r for r in read_timeline(self.timeline) if r["step"] < self.steps]
        self.timeline.write_text("".join(json.dumps(r) + "\n" for r in kept))


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
