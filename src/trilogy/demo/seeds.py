"""``trilogy demo --seeds N``: the demo once per seed (``seed-K/`` folders), then one report of every figure as
the mean and spread over the seeds. A verdict stands only where every seed reached the same one; otherwise the
spread is too wide to call it ("mixed")."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from ..data.cache import write_atomically
from .report import VERDICT_TEXT, text_table

HEADERS = ["model", "quality metric", "model (mean ± sd)", "baseline (mean ± sd)", "verdicts", "verdict"]


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for one value)."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def agreed(verdicts: list[str | None]) -> str | None:
    """The verdict every seed reached, else "mixed"."""
    if any(v is None for v in verdicts):
        return None
    return verdicts[0] if len(set(verdicts)) == 1 else "mixed"


def aggregate(reports: list[dict]) -> dict:
    """One summary of several seeds' reports (``run_demo``'s return values, in seed order)."""
    units = []
    for rows in zip(*(r["units"] for r in reports), strict=True):
        figures = [row.get("quality") for row in rows]
        if any(figure is None for figure in figures):
            continue
        units.append({"name": rows[0]["name"], "label": rows[0]["label"], "metric": figures[0]["metric"],
                      "model": spread([f["model"] for f in figures]),
                      "baseline": spread([f["baseline"] for f in figures]),
                      "verdicts": [row["verdict"] for row in rows], "verdict": agreed([row["verdict"] for row in rows])})
    blanks = [r["common_ground"].get("fill_blank") for r in reports]
    common = {}
    if all(blanks):
        common = {key: spread([b[key] for b in blanks]) if blanks[0][key] is not None else None
                  for key in ("bert", "gpt", "t5", "baseline")}
        common["blanks"] = blanks[0]["blanks"]
    return {"seeds": [r["options"]["seed"] for r in reports], "units": units,
            "common_ground": {"fill_blank": common} if common else {},
            "flops_spread": [r["budget"].get("flops_spread") for r in reports],
            "interrupted": any(r["interrupted"] for r in reports)}


def _cell(figure: dict | None) -> str:
    return "n/a" if figure is None else f"{figure['mean']:.3f} ± {figure['sd']:.3f}"


def rows(summary: dict) -> list[list[str]]:
    return [[u["label"], u["metric"], _cell(u["model"]), _cell(u["baseline"]),
             ", ".join(VERDICT_TEXT.get(v, str(v)) for v in u["verdicts"]),
             VERDICT_TEXT.get(u["verdict"], "mixed: the seeds disagree")] for u in summary["units"]]


def blank_rows(summary: dict) -> list[list[str]]:
    common = summary["common_ground"].get("fill_blank")
    if not common:
        return []
    return [[name, _cell(common[key])] for key, name in
            (("bert", "BERT"), ("gpt", "GPT"), ("t5", "T5"), ("baseline", "most frequent word"))]


def run_seeds(options, out: Path, count: int, resume: bool, run_demo) -> dict:
    """The demo for seeds ``options.seed`` .. ``options.seed + count - 1``, each in ``out/seed-K``; writes
    ``out/seeds.json`` and ``out/seeds.md`` and returns the summary. A seed whose report is complete is kept."""
    out = Path(out)
    reports = []
    for seed in range(options.seed, options.seed + count):
        folder = out / f"seed-{seed}"
        report_file = folder / "report.json"
        if resume and report_file.is_file() and not json.loads(report_file.read_text())["interrupted"]:
            reports.append(json.loads(report_file.read_text()))
            continue
        print(f"=== seed {seed} ({seed - options.seed + 1} of {count}) ===", flush=True)
        report = run_demo(replace(options, seed=seed), folder, resume=resume and (folder / "demo.json").is_file())
        reports.append(report)
        if report["interrupted"]:
            break
    summary = aggregate(reports)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "seeds.json", (json.dumps(summary, indent=1) + "\n").encode())
    table = text_table(HEADERS, rows(summary))
    blanks = blank_rows(summary)
    text = f"# trilogy demo over seeds {summary['seeds']}\n\n```text\n{table}\n```\n"
    if blanks:
        text += f"\nFill the blank ({summary['common_ground']['fill_blank']['blanks']} blanks per seed):\n\n"
        text += "```text\n" + text_table(["answered by", "accuracy (mean ± sd)"], blanks) + "\n```\n"
    text += "\nEach seed's full report: " + ", ".join(f"seed-{s}/report.html" for s in summary["seeds"]) + "\n"
    write_atomically(out / "seeds.md", text.encode())
    return summary

