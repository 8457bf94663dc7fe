"""The measured task x architecture matrix that ``trilogy demo`` writes (its ``report.json``), read back so that
``trilogy recommend`` and ``trilogy compare`` can cite it beside their reasoning (``--evidence report.json``).

A report holds ``tasks``: each ``{name, kind, metric, higher_is_better, baseline, notebook_says, results}``,
``results`` mapping an architecture (``encoder``, ``decoder``, ``prefix-lm``, ``encoder-decoder``) to
``{score, spread, flops}``: the mean score over the seeds and its spread (null from a single seed, which
measures none: such a report is cited but ranks nothing), or, for an architecture the task could not be run
on, ``score`` null and a ``reason``. Other keys are allowed and ignored.

Who won is computed here as the demo computes it: the architectures are ranked by mean score (in the metric's
direction), and another is tied with the first when their means are no further apart than the larger of their
two spreads; the first is the winner only when it is tied with none. A claim (the notebook's, naming one
architecture, or a recommendation, naming a family) *agrees* when every architecture at the top belongs to it,
is a *tie* when some do and some do not, and *does not* agree when none do. The decoder-only family is the
``decoder`` and the ``prefix-lm`` (a decoder whose prefix is read both ways).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data.tasks import KINDS
from .errors import TrilogyError
from .recommend import Recommendation

ARCHITECTURES = ("encoder", "decoder", "prefix-lm", "encoder-decoder")

#: a family of ``recommend`` -> the architectures of the report that belong to it
FAMILY_ARCHITECTURES = {"encoder-only": ("encoder",), "decoder-only": ("decoder", "prefix-lm"),
                        "encoder-decoder": ("encoder-decoder",)}

#: (factor, value) -> the task kinds that measure it: how the output relates to the input if the description
#: says, else what the output is, else left-to-right context; the first of these a recommendation has decides
TASK_KINDS = {
    ("relation", "extracts"): ("span", "tagging"),
    ("relation", "restates"): ("seq2seq",),
    ("relation", "open"): ("lm",),
    ("output", "label"): ("classification",),
    ("output", "text"): ("lm",),
    ("context", "left"): ("lm",),
}


@dataclass(frozen=True)
class Cell:
    """One architecture on one task: the mean score and its spread over the seeds, or n/a and why."""

    score: float | None
    spread: float | None
    flops: float | None
    reason: str | None

    def text(self) -> str:
        if self.score is None:
            return f"n/a ({self.reason})"
        return f"{self.score:.3f} ± {self.spread:.3f}" if self.spread is not None else f"{self.score:.3f} (one seed)"

    def to_dict(self) -> dict:
        return {"score": self.score, "spread": self.spread, "flops": self.flops, "reason": self.reason}


@dataclass(frozen=True)
class MeasuredTask:
    """One task of a report: its figures per architecture, and who won."""

    name: str
    kind: str
    metric: str
    higher_is_better: bool
    baseline: float | None
    notebook_says: str | None  # an architecture, or None where the notebook names none
    results: dict[str, Cell]

    @property
    def scored(self) -> dict[str, tuple[float, float]]:
        """(mean, spread) of each architecture with a score."""
        return {arch: (cell.score, cell.spread) for arch, cell in self.results.items()
                if cell.score is not None and cell.spread is not None}

    @property
    def ranked(self) -> list[str]:
        """The architectures with a score, best first."""
        scored = self.scored
        return sorted(scored, key=lambda arch: scored[arch][0], reverse=self.higher_is_better)

    @property
    def top(self) -> list[str]:
        """The first architecture and those tied with it: means no further apart than the larger spread."""
        scored, ranked = self.scored, self.ranked
        if not ranked:
            return []
        mean, spread = scored[ranked[0]]
        return [arch for arch in ranked if abs(scored[arch][0] - mean) <= max(scored[arch][1], spread)]

    @property
    def best(self) -> str | None:
        """The winner, or None for a tie at the top (or no score at all)."""
        top = self.top
        return top[0] if len(top) == 1 else None

    def verdict(self, claimed: Collection[str]) -> str | None:
        """"agrees", "tie" or "does not" for a claim naming the architectures ``claimed`` (see the module's
        docstring); None with nothing claimed or nothing measured."""
        top = self.top
        if not claimed or not top:
            return None
        inside = [arch in claimed for arch in top]
        return "agrees" if all(inside) else "tie" if any(inside) else "does not"

    @property
    def notebook_verdict(self) -> str | None:
        return self.verdict([self.notebook_says] if self.notebook_says else [])

    def outcome(self) -> str:
        """Who won, in words: "encoder best by more than the larger spread" or "tie: encoder, decoder (...)"."""
        if self.best is not None:
            return f"{self.best} best by more than the larger spread"
        if self.top:
            return f"tie: {', '.join(self.top)} (within the larger spread)"
        one_seed = any(cell.score is not None for cell in self.results.values())
        return "not ranked: one seed measures no spread" if one_seed else "nothing measured"

    def figures(self) -> str:
        """"accuracy (higher is better): encoder 0.850 ± 0.010 vs ...; baseline 0.500", best first."""
        unscored = [arch for arch in self.results if arch not in self.ranked]
        cells = " vs ".join(f"{arch} {self.results[arch].text()}" for arch in self.ranked + unscored)
        baseline = "none" if self.baseline is None else f"{self.baseline:.3f}"
        return (f"{self.metric} ({'higher' if self.higher_is_better else 'lower'} is better): {cells}; "
                f"baseline {baseline}")

    def name_and_kind(self) -> str:
        return f"{self.name} ({self.kind})"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "baseline": self.baseline,
                "results": {arch: cell.to_dict() for arch, cell in self.results.items()},
                "best": self.best, "tied": self.top,
                "notebook_says": self.notebook_says, "notebook_verdict": self.notebook_verdict}


@dataclass(frozen=True)
class Report:
    """A demo's report.json, read and checked."""

    path: Path
    tasks: list[MeasuredTask]

    def of_kinds(self, kinds: Collection[str]) -> list[MeasuredTask]:
        return [task for task in self.tasks if task.kind in kinds]

    def to_dict(self) -> dict:
        """The report's path and tasks, each with who won: itself a report ``parse_report`` reads."""
        return {"report": str(self.path), "tasks": [task.to_dict() for task in self.tasks]}


def read_report(path: str | Path) -> Report:
    """Read a ``trilogy demo`` report (``report.json``, or the folder holding it); a TrilogyError naming the
    file and what is wrong when it is missing, not JSON, or not in the schema of the module's docstring."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrilogyError(f"{path}: no such file (trilogy demo writes report.json in its output folder)") from None
    except UnicodeDecodeError:
        raise TrilogyError(f"{path}: not JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise TrilogyError(f"{path}: not JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    return parse_report(data, path)


def parse_report(data: Any, path: Path) -> Report:
    """A report from its JSON value ``data``, read from ``path`` (which the errors name)."""
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise TrilogyError(f"{path}: not a trilogy demo report: expected an object with a list of tasks")
    return Report(path, [_task(path, i, entry) for i, entry in enumerate(data["tasks"])])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _task(path: Path, index: int, entry: Any) -> MeasuredTask:
    where = f"{path}: tasks[{index}]"
    if not isinstance(entry, dict):
        raise TrilogyError(f"{where} must be an object, got {type(entry).__name__}")
    if isinstance(entry.get("name"), str):
        where += f" ({entry['name']})"

    def check(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            raise TrilogyError(f"{where}: {key} must be {expected}, got {json.dumps(value)}")

    name, kind, metric, results = (entry.get(key) for key in ("name", "kind", "metric", "results"))
    check(isinstance(name, str) and bool(name), "name", "a name", name)
    check(kind in KINDS, "kind", f"one of {', '.join(KINDS)}", kind)
    check(isinstance(metric, str) and bool(metric), "metric", "a metric's name", metric)
    check(isinstance(entry.get("higher_is_better"), bool), "higher_is_better", "true or false",
          entry.get("higher_is_better"))
    check(entry.get("baseline") is None or _number(entry["baseline"]), "baseline", "a number or null",
          entry.get("baseline"))
    check(entry.get("notebook_says") in (None, "", *ARCHITECTURES), "notebook_says",
          f"one of {', '.join(ARCHITECTURES)} or null", entry.get("notebook_says"))
    check(isinstance(results, dict) and bool(results) and set(results) <= set(ARCHITECTURES), "results",
          f"an object keyed by some of {', '.join(ARCHITECTURES)}", results)
    cells = {}
    for arch in sorted(results, key=ARCHITECTURES.index):
        cell = results[arch]
        check(isinstance(cell, dict), f"results.{arch}", "an object", cell)
        score, spread, flops, reason = (cell.get(key) for key in ("score", "spread", "flops", "reason"))
        check(score is None or _number(score), f"results.{arch}.score", "a number or null", score)
        check(flops is None or _number(flops), f"results.{arch}.flops", "a number or null", flops)
        if score is None:
            check(isinstance(reason, str) and bool(reason), f"results.{arch}.reason",
                  "the reason it has no score", reason)
        else:
            check(spread is None or (_number(spread) and spread >= 0), f"results.{arch}.spread",
                  "a number >= 0, or null (one seed)", spread)
        cells[arch] = Cell(score, spread if score is not None else None, flops, reason if score is None else None)
    return MeasuredTask(name, kind, metric, entry["higher_is_better"], entry.get("baseline"),
                        entry.get("notebook_says") or None, cells)


def measured_by(answer: Recommendation) -> tuple[str | None, tuple[str, ...]]:
    """("factor: value", the task kinds that measure it) for the factor of ``answer`` that decides which tasks
    of a report test it (``TASK_KINDS``); (None, ()) for none."""
    for (factor, value), kinds in TASK_KINDS.items():
        if factor in answer.factors and answer.factors[factor].value == value:
            return f"{factor}: {value}", kinds
    return None, ()


def recommendation_evidence(answer: Recommendation, report: Report) -> dict:
    """The report's tasks of the kinds that measure ``answer`` (``measured_by``), each with its ``verdict`` on
    the recommended family."""
    factor, kinds = measured_by(answer) if answer.architecture else (None, ())
    claimed = FAMILY_ARCHITECTURES[answer.architecture] if answer.architecture else ()
    return {"report": str(report.path), "factor": factor, "kinds": list(kinds),
            "tasks": [task.to_dict() | {"verdict": task.verdict(claimed)} for task in report.of_kinds(kinds)]}


def recommendation_lines(answer: Recommendation, report: Report) -> list[str]:
    """``recommendation_evidence`` in words: a "Measured (report.json)" line, then two lines per task."""
    head = f"Measured ({report.path})"
    if answer.architecture is None:
        return [f"{head}: nothing to check without a recommendation"]
    factor, kinds = measured_by(answer)
    if factor is None:
        return [f"{head}: nothing to cite: the description names no task kind the report measures"]
    tasks = report.of_kinds(kinds)
    if not tasks:
        return [f"{head}: no {' or '.join(kinds)} task in the report ({factor})"]
    claimed = FAMILY_ARCHITECTURES[answer.architecture]
    words = {"agrees": "agrees with", "tie": "a tie for", "does not": "does not agree with",
             None: "nothing measured to check"}
    lines = [f"{head}, its {' and '.join(kinds)} tasks ({factor}):"]
    for task in tasks:
        lines += [f"  on {task.name_and_kind()}, {task.figures()}",
                  f"    {task.outcome()}: {words[task.verdict(claimed)]} the recommendation ({answer.architecture})"]
    return lines


def matrix_lines(evidence: dict) -> list[str]:
    """A report's task x architecture matrix (``evidence``: ``Report.to_dict()``) as a table, with the notebook's
    claim and its verdict."""
    report = parse_report(evidence, Path(evidence["report"]))
    lines = [f"Measured ({report.path}): mean ± spread over the seeds (↑ higher is better, ↓ lower)",
             f"  {'task':28s}{'metric':22s}" + "".join(f"{arch:>17s}" for arch in ARCHITECTURES)
             + f"{'baseline':>10s}  notebook says"]
    notes = []
    for task in report.tasks:
        cells = "".join(f"{(task.results[arch].text() if arch in task.scored else 'n/a'):>17s}"
                        if arch in task.results else f"{'-':>17s}" for arch in ARCHITECTURES)
        baseline = "none" if task.baseline is None else f"{task.baseline:.3f}"
        claim = f"{task.notebook_says}: {task.notebook_verdict}" if task.notebook_says else "-"
        lines.append(f"  {task.name_and_kind():28s}{task.metric + (' ↑' if task.higher_is_better else ' ↓'):22s}"
                     f"{cells}{baseline:>10s}  {claim}")
        missing = [f"{arch} ({cell.reason})" for arch, cell in task.results.items() if cell.score is None]
        notes.append(f"  {task.name}: {task.outcome()}" + (f"; n/a: {', '.join(missing)}" if missing else ""))
    return lines + notes
