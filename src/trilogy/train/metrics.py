"""The run's record: ``metrics.jsonl`` (one JSON object per line; training lines carry ``step`` and ``loss``,
evaluation lines ``split: "validation"``) and a loss-curve PNG drawn from it."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path


class MetricsLog:
    """Appends one JSON line per record, flushed at once so a killed run loses at most the line being written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        """Every complete line (a line cut short by a kill is skipped)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step``: on resume they are computed again. Atomic (temp + rename)."""
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        replace_by_rename(self.path.with_suffix(".jsonl.tmp"), self.path,
                          lambda temp: temp.write_text("".join(json.dumps(r) + "\n" for r in kept)))


def plot_loss(records: list[dict], path: str | Path) -> None:
    """Training loss per step and validation loss at each evaluation, on one axis (nats per token)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train" and math.isfinite(r["loss"])]
    valid = [(r["step"], r["loss"]) for r in records if r.get("split") == "validation"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        replace_by_rename(Path(path).with_suffix(".tmp.png"), Path(path), lambda temp: fig.savefig(temp, dpi=100))
    finally:
        plt.close(fig)


def replace_by_rename(temp: Path, path: Path, write: Callable[[Path], object]) -> None:
    """``write(temp)``, then rename ``temp`` onto ``path``; on failure (a full disk) ``temp`` is removed."""
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
