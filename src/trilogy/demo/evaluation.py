"""Measuring the trained units: held-out metrics (``trilogy.train.evaluate``), the common ground (parameters,
FLOPs and tokens trained on, FLOP rate, peak memory), each family's quality figure against its baseline, and the
loss curves.
Everything here is measured on this run or computed from the model's config; nothing is typed in."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..sizing import count_parameters
from ..train.baselines import copy_name_scores
from ..train.metrics import MetricsLog
from . import unit_baselines
from .budget import read_timeline
from .families import Unit

if TYPE_CHECKING:
    from .state import UnitRecord

SMOOTHING = 10  # steps in the moving average of the training loss quoted as "last"


def curve(folder: Path) -> list[dict]:
    """Training loss per step with the tokens, FLOPs and seconds at the end of that step, and validation
    losses."""
    timeline = {r["step"]: r for r in read_timeline(folder / "timeline.jsonl")}
    points = []
    for record in MetricsLog(folder / "metrics.jsonl").records():
        at = timeline.get(record.get("step"))
        if at is not None and record.get("loss") is not None:
            points.append(dict(split=record.get("split", "train"), step=record["step"], loss=record["loss"],
                               tokens=at["tokens"], flops=at["flops"], seconds=at["seconds"]))
    return points


def common_ground(config, record: UnitRecord) -> dict:
    """Parameters, and what the unit's training spent as measured: FLOPs (``trilogy.sizing.training_flops`` of
    every batch at its real lengths), tokens seen, loss-bearing tokens, and per second of its training clock;
    the peak memory."""
    seconds, peak = record.seconds, record.peak_memory_bytes
    return dict(params=count_parameters(config), flops=record.flops, loss_tokens=record.loss_tokens,
                flops_per_token=record.flops / record.tokens if record.tokens else None,
                tokens_per_s=record.tokens / seconds if seconds else None,
                flops_per_s=record.flops / seconds if seconds else None,
                peak_memory_mb=peak / 2**20 if peak else None)


def loss_fall(points: list[dict]) -> tuple[float | None, float | None]:
    """(first training loss, mean of the last ``SMOOTHING`` training losses)."""
    losses = [p["loss"] for p in points if p["split"] == "train" and math.isfinite(p["loss"])]
    if not losses:
        return None, None
    tail = losses[-SMOOTHING:]
    return losses[0], sum(tail) / len(tail)


def quality(unit: Unit, validation: dict, baseline: dict) -> dict | None:
    """The unit's held-out quality figure beside its baseline's (None for span corruption, which has none).
    ``higher_is_better`` tells which way "beats" goes."""
    if unit.objective == "clm":
        return dict(metric="nats per character", model=validation["nats_per_char"], baseline_name="unigram",
                    baseline=baseline["unigram_nats_per_char"], higher_is_better=False)
    if unit.objective == "mlm":
        return dict(metric="accuracy at [MASK]", model=validation["blank_accuracy"],
                    baseline_name="most frequent token", baseline=baseline["unigram_blank_accuracy"],
                    higher_is_better=True)
    if unit.objective == "seq2seq":
        return dict(metric="docstring word F1", model=validation["word_f1"], baseline_name="copy the function name",
                    baseline=baseline["copy_name_word_f1"], higher_is_better=True)
    return None


#: how much better than its baseline (relative) a model must be to be called better; closer is "level": the
#: held-out figures come from a few batches, and a few percent either way is noise
CLEAR_MARGIN = 0.10


def verdict(figure: dict | None) -> str | None:
    """"better", "level" (within ``CLEAR_MARGIN`` of the baseline) or "worse"; None without a baseline."""
    if figure is None:
        return None
    ahead = figure["model"] - figure["baseline"]  # > 0: the model is ahead
    if not figure["higher_is_better"]:
        ahead = -ahead
    margin = CLEAR_MARGIN * abs(figure["baseline"])  # a baseline of 0 (a short run's few batches) leaves none
    if ahead > 0 and ahead >= margin:
        return "better"
    return "worse" if ahead < 0 and -ahead >= margin else "level"


def baseline_figures(unit: Unit, corpus, tokenizer, counts, seq_len: int, batch_size: int,
                     eval_batches: int) -> dict:
    if unit.objective == "clm":
        return {"unigram_nats_per_char": unit_baselines.unigram_nats_per_char(counts, corpus, tokenizer)}
    if unit.objective == "mlm":
        guesses = unit_baselines.unigram_fill_mask_accuracy(counts, corpus, tokenizer, seq_len, batch_size, eval_batches)
        return {"unigram_accuracy": guesses["accuracy"], "unigram_blank_accuracy": guesses["blank_accuracy"],
                "most_frequent_token": unit_baselines.most_frequent_token(counts, tokenizer)}
    if unit.objective == "seq2seq":
        return {"copy_name_word_f1": copy_name_scores(corpus, tokenizer, seq_len, batch_size,
                                                      eval_batches)["word_f1"]}
    return {}


def cached(folder: Path, steps: int, compute) -> dict:
    """``compute()`` once per trained state of a unit: kept in ``demo_eval.json`` with the step it measured."""
    file = folder / "demo_eval.json"
    if file.is_file():
        saved = json.loads(file.read_text())
        if saved.get("steps") == steps:
            return saved["result"]
    result = compute()
    file.write_text(json.dumps({"steps": steps, "result": result}, indent=1) + "\n")
    return result
