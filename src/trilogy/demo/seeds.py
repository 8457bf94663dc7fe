"""``trilogy demo``'s seeds and its matrix: the demo once per seed (in the output folder itself for one seed,
in ``seed-K/`` folders for several), then every cell of the task x architecture matrix as the mean and the
spread (max - min) over the seeds, the best cell where it stands clear of the next, and the notebook's claim
checked against it."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from ..train.distributed import Distributed
from .budget import StopRequest, first_ctrl_c_requests_stop
from .families import ARCHITECTURES


def cell(values: list[dict]) -> dict:
    """One architecture on one task over the seeds: the mean score and its spread (max - min; None from one
    seed, which measures none), the mean FLOPs; an n/a cell (any seed without a score) has score None and the
    reason."""
    scores = [value["score"] for value in values]
    flops = statistics.fmean(value["flops"] for value in values)
    if any(score is None for score in scores):
        reason = next(value["reason"] for value in values if value["score"] is None)
        return {"score": None, "spread": None, "flops": flops, "values": scores, "reason": reason}
    spread = max(scores) - min(scores) if len(scores) > 1 else None
    return {"score": statistics.fmean(scores), "spread": spread, "flops": flops,
            "values": scores, "reason": None}


def best_of(results: dict, higher_is_better: bool, seeds: int = 2) -> tuple[str | None, list[str]]:
    """(the best architecture, or None when it does not stand clear of the next by more than either's spread;
    the architectures tied at the top). One seed measures no spread, so it names no best: ``(None, [])``."""
    if seeds < 2:
        return None, []
    scored = sorted((arch for arch in results if results[arch]["score"] is not None),
                    key=lambda arch: results[arch]["score"], reverse=higher_is_better)
    if not scored:
        return None, []
    top = results[scored[0]]
    tied = [arch for arch in scored
            if abs(results[arch]["score"] - top["score"]) <= max(results[arch]["spread"], top["spread"])]
    return (scored[0], tied) if len(tied) == 1 else (None, tied)


def verdict(claimed: str | None, best: str | None, tied: list[str]) -> str | None:
    """"agrees" where the notebook's pick is the clear best, "tie" where it is among the tied best, else "does
    not" (None where the notebook names no architecture, or nothing was ranked: one seed)."""
    if not claimed or (best is None and not tied):
        return None
    if best is not None:
        return "agrees" if best == claimed else "does not"
    return "tie" if claimed in tied else "does not"


def gap(values: list[float]) -> float | None:
    """How far apart the largest and the smallest are: largest / smallest - 1 (None without two values)."""
    values = [value for value in values if value]
    return max(values) / min(values) - 1 if len(values) > 1 else None


def aggregate(seeds: list[dict]) -> dict:
    """The report's data from the seeds' results (``findings.seed_results``, in seed order)."""
    tasks = []
    for rows in zip(*(seed["tasks"] for seed in seeds), strict=True):
        first = rows[0]
        results = {arch: cell([row["results"][arch] for row in rows]) for arch in ARCHITECTURES}
        best, tied = best_of(results, first["higher_is_better"], len(seeds))
        tasks.append({key: first[key] for key in ("name", "kind", "metric", "higher_is_better", "baseline",
                                                   "baseline_name", "notebook_says", "claim", "source",
                                                   "train_rows", "eval_rows")}
                     | {"results": results, "best": best, "tied": tied,
                        "verdict": verdict(first["notebook_says"], best, tied),
                        "flops_gap": gap([results[arch]["flops"] for arch in ARCHITECTURES
                                          if results[arch]["score"] is not None])})
    pretraining = []
    for rows in by_arch(seeds).values():
        row = {key: value for key, value in rows[0].items() if key != "curve"}
        if row["init"] is None:
            for key in ("flops", "tokens", "seconds", "steps"):
                row[key] = statistics.fmean(r[key] or 0 for r in rows)
        pretraining.append(row)
    return {"seeds": [seed["seed"] for seed in seeds], "spread": "max - min over the seeds",
            "interrupted": any(seed["interrupted"] for seed in seeds), "device": seeds[0]["device"],
            "precision": seeds[0]["precision"], "budgets": [seed["budget"] for seed in seeds],
            "pretraining": pretraining,
            "pretraining_flops_gap": gap([row["flops"] for row in pretraining if row["init"] is None]),
            "tasks": tasks, "curves": {arch: [row.get("curve") or [] for row in rows]
                                        for arch, rows in by_arch(seeds).items()},
            "folders": [seed["out"] for seed in seeds]}


def by_arch(seeds: list[dict]) -> dict[str, list[dict]]:
    """Architecture -> its pre-training row in each seed."""
    return {rows[0]["arch"]: list(rows) for rows in zip(*(seed["pretraining"] for seed in seeds), strict=True)}


def run_demo(options, out: Path, dist: Distributed, seeds: int = 1, resume: bool = False) -> dict | None:
    """The demo for seeds ``options.seed`` .. ``options.seed + seeds - 1`` (one seed: in ``out``; several: in
    ``out/seed-K``) as this rank (``run.join``), then the report in ``out``. Returns the report's data; its
    ``interrupted`` is True when Ctrl-C stopped it (the report is then partial). Under torchrun the main rank
    writes the report and returns it, the others return None; Ctrl-C there is torchrun's: it ends every process
    at once (ranks stopping at different steps would wait on each other), and ``--resume`` continues."""
    from .report import write_reports
    from .run import run_seed, say
    from .state import load_state

    out = Path(out)
    started = time.perf_counter()
    results = []
    shared = None
    with first_ctrl_c_requests_stop() if not dist.enabled else contextlib.nullcontext(StopRequest()) as stop:
        for seed in range(options.seed, options.seed + seeds):
            folder = out if seeds == 1 else out / f"seed-{seed}"
            if seeds > 1:
                say(dist, f"=== seed {seed} ({seed - options.seed + 1} of {seeds}) ===")
            budget = f"planned for {options.minutes:g} minutes" if options.minutes else "the size's FLOP budget"
            say(dist, f"trilogy demo: size {options.size}, {budget}; the four architectures get "
                      "the same pre-training FLOPs, and the same fine-tuning FLOPs on each task")
            results.append(run_seed(replace(options, seed=seed), folder, stop, dist, resume=resume,
                                    budget=shared))
            shared = shared or load_state(folder).budget  # the first seed's quotas serve every seed
            if stop.requested:
                break
    if not dist.is_main:
        return None
    print("writing the report", flush=True)
    report = aggregate(results)
    report["options"] = json.loads(json.dumps(vars(options)))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_reports(out, report)
    return report
