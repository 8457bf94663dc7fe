"""The demo's report: ``report.md`` and a self-contained ``report.html`` (pictures embedded as base64) built
from one list of blocks, so both carry the same numbers; ``report.json`` holds the data they were built from
(``seeds.aggregate``); the terminal gets the matrix.

A block is a tuple: ``("h1" | "h2", text)``, ``("ul", [text, ...])``, ``("p", text)``, ``("pre", text)``,
``("table", headers, rows)`` or ``("img", file, caption)``.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

from .charts import draw_loss_curves
from .families import ARCHITECTURES

MAX_FLOPS_GAP = 0.05  # the "equal within 5%"
VERDICT_TEXT = {"agrees": "agrees", "does not": "does not", "tie": "tie (the notebook's pick among the best)",
                None: ""}
STATUS_TEXT = {"done": "done", "interrupted": "interrupted (Ctrl-C)", "deadline": "stopped at its deadline",
               "training": "interrupted", "pending": "not trained"}


def format_flops(value: float | None) -> str:
    """FLOPs with a prefix that keeps three significant digits: "12.3 TFLOP", "456 GFLOP"."""
    if value is None:
        return "n/a"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}FLOP"
    return f"{value:.0f} FLOP"


def _gap(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" + ("" if value <= MAX_FLOPS_GAP else " (more than 5%)")


def cell_text(task: dict, arch: str) -> str:
    """A matrix cell: mean ± spread, "best" on the clear best; n/a with its reason."""
    result = task["results"][arch]
    if result["score"] is None:
        return f"n/a: {result['reason']}"
    spread = result["spread"]
    text = f"{result['score']:.3f}" + (f" ± {spread:.3f}" if spread is not None else "")
    return text + " (best)" if task["best"] == arch else text


MATRIX_HEADERS = ["task", "metric", "baseline", *ARCHITECTURES, "best", "notebook says", "measured"]


def matrix_rows(report: dict) -> list[list[str]]:
    """``MATRIX_HEADERS`` rows: each task's cells, the best (or the tie), the notebook's pick and the verdict."""
    rows = []
    for task in report["tasks"]:
        direction = "higher" if task["higher_is_better"] else "lower"
        best = task["best"] or ("tie: " + ", ".join(task["tied"]) if task["tied"] else
                                ("one seed: not ranked" if len(report["seeds"]) < 2 else "n/a"))
        rows.append([task["name"], f"{task['metric']} ({direction} is better)",
                     f"{task['baseline']:.3f} ({task['baseline_name']})",
                     *(cell_text(task, arch) for arch in ARCHITECTURES), best, task["notebook_says"] or "",
                     VERDICT_TEXT[task["verdict"]]])
    return rows


def pretraining_rows(report: dict) -> list[list[str]]:
    rows = []
    for row in report["pretraining"]:
        if row["init"] is not None:
            rows.append([row["label"], f"{row['params']:,}", f"from {row['init']}", "", "", "", ""])
            continue
        rows.append([row["label"], f"{row['params']:,}", row["objective"], format_flops(row["flops"]),
                     f"{row['tokens']:,.0f}", f"{row['seconds']:.0f} s", f"{row['steps']:.0f}"])
    return rows


def finetuning_rows(report: dict) -> list[list[str]]:
    return [[task["name"], *(format_flops(task["results"][arch]["flops"]) if task["results"][arch]["score"]
                             is not None else "n/a" for arch in ARCHITECTURES), _gap(task["flops_gap"])]
            for task in report["tasks"]]


def blocks(report: dict) -> list[tuple]:
    """The report, as blocks (see the module's docstring)."""
    seeds = report["seeds"]
    out: list[tuple] = [
        ("h1", "trilogy demo: the notebook's use-case table, measured"),
        ("p", f"One pre-training corpus, four architectures of the same size at the same pre-training FLOPs, each "
              f"fine-tuned on each task at the same FLOPs per task, then scored on the task's held-out rows. "
              f"Seeds {', '.join(map(str, seeds))}; each cell is the mean ± the spread (max - min) over them. "
              f"A cell is marked best only where it beats the next by more than either's spread, else the row is "
              f"a tie" + (" (one seed measures no spread, so nothing is ranked: run --seeds 3)"
                          if len(seeds) < 2 else "") + f". {report['device']}, {report['precision']}, {report['wall_seconds']:.0f} s in all."
              + (" INTERRUPTED: partial results." if report["interrupted"] else "")),
        ("h2", "Task x architecture"),
        ("table", MATRIX_HEADERS, matrix_rows(report)),
        ("h2", "What the notebook says"),
        ("ul", [f"{task['name']}: {task['claim']}" for task in report["tasks"] if task["claim"]]),
        ("h2", "Pre-training"),
        ("p", "Each architecture on the same corpus with its own objective, at the same training FLOPs "
              f"(largest / smallest - 1: {_gap(report['pretraining_flops_gap'])})."),
        ("table", ["architecture", "parameters", "objective", "train FLOPs", "tokens", "time", "steps"],
         pretraining_rows(report)),
    ]
    if report.get("loss_chart"):
        out.append(("img", report["loss_chart"], "pre-training loss of each architecture"))
    out += [
        ("h2", "Fine-tuning FLOPs per task"),
        ("table", ["task", *ARCHITECTURES, "largest / smallest - 1"], finetuning_rows(report)),
        ("h2", "How the figures are measured"),
        ("ul", ["scores: trilogy.objectives.task_adapters.score on the task's held-out rows (never in its train "
                "rows nor in the pre-training corpus); baselines: trilogy.data.tasks.baseline_score on the same "
                "rows;",
                "training FLOPs: trilogy.sizing.training_flops of every batch a unit trained on (forward and "
                "backward, each row at its real length); each unit stops at the step that brings it nearest its "
                "quota;",
                "'agrees': the notebook's pick is the clear best; 'tie': it is among the best, which the spread "
                "does not separate; 'does not': another architecture is the clear best, or the pick is not among "
                "the tied best.",
                "each seed's folder holds a checkpoint per unit: pretrain/ARCH and finetune/TASK/ARCH."]),
    ]
    return out


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table for the terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in [headers, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)



# --- rendering ---------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(items: list[tuple]) -> str:
    lines = []
    for kind, *rest in items:
        if kind in ("h1", "h2"):
            lines += [("# " if kind == "h1" else "## ") + rest[0], ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in rest[0]] + [""]
        elif kind == "pre":
            lines += ["```text", rest[0], "```", ""]
        elif kind == "table":
            headers, rows = rest
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{rest[1]}]({rest[0]})", ""]
    return "\n".join(lines)


def to_html(items: list[tuple], folder: Path) -> str:
    body = []
    for kind, *rest in items:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in rest[0]) + "</ul>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(rest[0])}</pre>")
        elif kind == "table":
            headers, rows = rest
            head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                            for row in rows)
            body.append(f"<table><tr>{head}</tr>{cells}</table>")
        elif kind == "img":
            data = base64.b64encode((folder / rest[0]).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(rest[1])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(rest[1])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "vertical-align:top}th{background:#f3f3f3}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>trilogy demo: the use-case table</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def write_reports(out: Path, report: dict) -> None:
    """report.md, report.html and report.json in ``out`` (each replaced atomically)."""
    if any(any(seeds) for seeds in report["curves"].values()):
        draw_loss_curves(report["curves"], out / "loss_curves.png")
        report["loss_chart"] = "loss_curves.png"
    items = blocks(report)
    _write(out / "report.md", to_markdown(items))
    _write(out / "report.html", to_html(items, out))
    _write(out / "report.json", json.dumps(report, indent=1) + "\n")
