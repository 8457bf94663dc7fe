"""The demo's report: ``report.md`` and a self-contained ``report.html`` (pictures embedded as base64) built
from one list of blocks, so both carry the same numbers; ``report.json`` holds the data they were built from;
the terminal gets the summary table.

A block is a tuple: ``("h1" | "h2", text)``, ``("ul", [text, ...])``, ``("links", text, [(text, file), ...])``, ``("p", text)``, ``("pre", text)``, ``("table", headers, rows)`` or
``("img", file, caption)``.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

from .evaluation import CLEAR_MARGIN
from .families import T5_CODE_SHARE
from .training import REPETITION_PENALTY

SUMMARY_HEADERS = ["model", "status", "parameters", "train FLOPs", "steps", "tokens", "loss tokens", "time",
                   "GFLOP/s", "peak memory", "train loss first -> last", "validation loss",
                   "held-out quality (model vs baseline)"]
FAMILY_HEADERS = ["family", "train FLOPs", "tokens seen", "loss-bearing tokens", "training time", "GFLOP/s"]
FAMILY_NAMES = {"bert": "BERT (encoder)", "gpt": "GPT (decoder)", "t5": "T5 (encoder-decoder)"}
BLANK_HEADERS = ["answered by", "reads", "accuracy"]
STATUS_TEXT = {"done": "done", "interrupted": "interrupted (Ctrl-C)", "deadline": "stopped at its deadline",
               "training": "interrupted", "pending": "not trained"}


VERDICT_TEXT = {"better": "better", "level": f"level (within {CLEAR_MARGIN:.0%})", "worse": "NOT better"}
VERDICT_SENTENCE = {
    "better": f"better than the baseline (by {CLEAR_MARGIN:.0%} or more).",
    "level": f"level with the baseline (within {CLEAR_MARGIN:.0%}): not clearly better.",
    "worse": "NOT better than the baseline: it did not learn enough in this budget.",
}


def _number(value, fmt: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, fmt)


def _quality(unit: dict) -> str:
    figure = unit.get("quality")
    if figure is None:
        return "no baseline (pre-training for the docstring task)" if unit.get("steps") else ""
    if unit["verdict"] is None:
        return ""
    return (f"{figure['metric']}: {figure['model']:.3f} vs {figure['baseline']:.3f} "
            f"({figure['baseline_name']}): {VERDICT_TEXT[unit['verdict']]}")


def summary_rows(units: list[dict]) -> list[list[str]]:
    """One row of ``SUMMARY_HEADERS`` per unit, every figure as measured (n/a where nothing was measured)."""
    rows = []
    for unit in units:
        if unit.get("steps") is None:
            rows.append([unit["label"], STATUS_TEXT[unit["status"]]] + [""] * (len(SUMMARY_HEADERS) - 2))
            continue
        loss = (f"{unit['first_loss']:.2f} -> {unit['last_loss']:.2f}" if unit["first_loss"] is not None
                else "n/a")
        rows.append([
            unit["label"], STATUS_TEXT[unit["status"]], f"{unit['params']:,}", format_flops(unit["flops"]),
            f"{unit['steps']}/{unit['max_steps']}", f"{unit['tokens']:,}", f"{unit['loss_tokens']:,}",
            f"{unit['seconds']:.0f} s", _number(unit["flops_per_s"] and unit["flops_per_s"] / 1e9, ",.1f"),
            _number(unit["peak_memory_mb"], ",.0f") + (" MiB" if unit["peak_memory_mb"] else ""),
            loss, f"{unit['validation']['loss']:.3f}", _quality(unit),
        ])
    return rows


def format_quota(measure: str, quota: float | None) -> str:
    """A budget's quota in its measure: "12.3 TFLOP", "1,234,567 tokens" or "150 s" (None: planned steps)."""
    if quota is None:
        return "its planned steps"
    return {"flops": format_flops(quota), "tokens": f"{quota:,.0f} tokens", "seconds": f"{quota:.0f} s"}[measure]


def format_flops(value: float) -> str:
    """FLOPs with a prefix that keeps three significant digits: "12.3 TFLOP", "456 GFLOP"."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}FLOP"
    return f"{value:.0f} FLOP"


def family_table(families: dict) -> list[list[str]]:
    """``FAMILY_HEADERS`` rows: what each family spent (T5's pre-training and fine-tuning together)."""
    return [[FAMILY_NAMES[family], format_flops(row["flops"]), f"{row['tokens']:,}", f"{row['loss_tokens']:,}",
             f"{row['seconds']:.0f} s", _number(row["flops_per_s"] and row["flops_per_s"] / 1e9, ",.1f")]
            for family, row in families.items()]


def _shown_answer(answer: str | None) -> str:
    """An answer as the examples table shows it: a token that is only whitespace (a line break, a space) was
    stripped to "" for scoring, and would look like no answer at all."""
    if answer is None:
        return ""
    return answer or "(whitespace)"


def blank_table(result: dict) -> list[list[str]]:
    """``BLANK_HEADERS`` rows of the fill-the-blank question."""
    reads = {"bert": "both sides of the blank ([MASK])", "gpt": "the left side only (next token)",
             "t5": "both sides (a sentinel span)"}
    rows = [[FAMILY_NAMES[family], reads[family],
             "did not train on the text" if result[family] is None else f"{result[family]:.3f}"]
            for family in ("bert", "gpt", "t5")]
    rows.append([f"baseline: always \"{result['baseline_word']}\"", "nothing", f"{result['baseline']:.3f}"])
    return rows


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table for the terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in [headers, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


# --- the blocks --------------------------------------------------------------------------------------------


def _verdicts(report: dict) -> list[str]:
    lines = []
    for unit in report["units"]:
        if unit.get("steps") is None:
            lines.append(f"{unit['label']}: not trained in this run.")
            continue
        text = f"{unit['label']}: {STATUS_TEXT[unit['status']]} after {unit['steps']} of {unit['max_steps']} steps"
        if unit["first_loss"] is not None:
            fall = 1 - unit["last_loss"] / unit["first_loss"]
            text += f"; training loss {unit['first_loss']:.2f} -> {unit['last_loss']:.2f} ({fall:.0%} lower)"
        if unit["quality"] is not None:
            figure = unit["quality"]
            text += (f"; {figure['metric']} {figure['model']:.3f} against {figure['baseline']:.3f} for the "
                     f"{figure['baseline_name']} baseline: "
                     + VERDICT_SENTENCE[unit["verdict"]])
        lines.append(text)
    return lines


def _budget_text(report: dict) -> str:
    budget, options = report["budget"], report["options"]
    if budget.get("measure") is None:
        return "Budget: not planned (the demo stopped before its probe finished)."
    spent = {"flops": "training FLOPs", "tokens": "tokens seen", "seconds": "seconds of training"}[budget["measure"]]
    quota = budget["per_family"]
    amount = format_quota(budget["measure"], quota)
    planned = ("given with --flops" if options.get("flops") else
               f"as much as fits in {options['minutes']:g} minutes at the step costs a probe measured here")
    text = (f"Budget: the same {spent} for each family, {amount} ({planned}); each unit stops when its share is "
            f"spent. T5 spends {T5_CODE_SHARE:.0%} of its budget denoising the code of the pairs, the rest on "
            f"code -> docstring. FLOPs are trilogy.sizing's count for every batch at its real lengths "
            f"(padding excluded; the LM/MLM head counted on the loss-bearing tokens only).")
    if budget.get("flops_spread") is not None:
        text += f" The families' FLOPs ended {budget['flops_spread']:.1%} apart."
    return text


def blocks(report: dict) -> list[tuple]:
    options = report["options"]
    out = [("h1", "trilogy demo: three transformer families, one budget")]
    if report["interrupted"]:
        out.append(("p", "PARTIAL REPORT: the demo was interrupted with Ctrl-C. Continue it with "
                         f"`trilogy demo --resume --out {report['out']}`."))
    out += [
        ("p", _budget_text(report) + f" Data: `{options['data']}` (text) and `{options['pairs']}` (pairs). "
              f"Models: d_model {options['d_model']}, {options['layers']} layers (T5: {options['layers'] // 2} "
              f"encoder + {options['layers'] // 2} decoder), {options['heads']} heads, sequences of "
              f"{options['seq_len']} tokens, batches of {options['batch_size']} (T5: half as long and twice as "
              f"many), seed {options['seed']}; MLP widths chosen so the parameter counts match."),
        ("p", f"Machine: {report['machine']}; device {report['device']}, precision {report['precision']}. Peak "
              f"memory is the {report['memory_kind']} while the unit trained. This run took "
              f"{report['wall_seconds']:.0f} s from start to report."),
        ("h2", "Summary"),
        ("table", SUMMARY_HEADERS, report["summary"]),
        ("ul", _verdicts(report)),
        ("h2", "What each family spent"),
        ("table", FAMILY_HEADERS, family_table(report["families"])),
    ]
    blank = report["common_ground"].get("fill_blank")
    if blank:
        out += [("h2", "One question for all three: fill the blank"),
                ("p", f"{blank['blanks']} held-out lines, one word hidden in each (a word every tokenizer holds "
                      "as one token), the line before given too. BERT reads both sides of the blank; GPT reads "
                      "only what comes before it; the demo's T5 pre-trained on code and never saw the text."),
                ("table", BLANK_HEADERS, blank_table(blank))]
        shown = [[f"{row['before'].splitlines()[-1]} ____{row['after']}", row["word"],
                  *(_shown_answer(row.get(family)) for family in ("bert", "gpt"))] for row in blank["examples"]]
        out.append(("table", ["line", "hidden word", "BERT", "GPT"], shown))
    pictures = report["pictures"]
    out += [("h2", "Loss curves"), ("img", pictures["loss"], "loss against training FLOPs, tokens and time")]
    out += _sample_blocks(report["samples"])
    out.append(("h2", "How each family attends"))
    if "attention" in pictures:
        out.append(("img", pictures["attention"], "last layer's attention per head, same sentence"))
    if pictures["pages"]:
        out.append(("links", "Explore every layer and head interactively (hover a token to see where it attends):",
                    [(f"{name} attention page", file) for name, file in pictures["pages"].items()]))
    out.append(("p", "The masks behind those patterns, drawn from the masks the models build "
                     "(coloured = may attend):"))
    out.append(("img", pictures["masks"], "attention masks of the three families"))
    out += [("h2", "Checkpoints"),
            ("p", "Each unit's folder is a checkpoint: `trilogy.from_pretrained(\"DIR/gpt\")`, "
                  "`trilogy generate DIR/gpt --prompt \"ROMEO:\"`; also `DIR/bert`, `DIR/t5-code`, `DIR/t5`. "
                  "Each holds metrics.jsonl (every step), timeline.jsonl (tokens and seconds per step) and "
                  "loss.png.")]
    out += [("h2", "How the figures are measured"),
            ("ul", ["validation loss, accuracy at [MASK] (the masked-LM targets the input shows as [MASK]; the "
                    "10% left visible can be copied, so they are not counted), nats per character and docstring "
                    "word F1: "
                    f"trilogy.train.evaluate on the held-out split ({options['eval_batches']} batches);",
                    "baselines on the same held-out data: a unigram model of the training text (nats per "
                    "character), always guessing the most frequent token (at [MASK]), the function's "
                    "name as its docstring (word F1);",
                    "training FLOPs: trilogy.sizing.training_flops of every batch the unit trained on (forward "
                    "and backward, each row at its real length); tokens: real (non-padding) input tokens, "
                    "encoder and decoder; loss-bearing tokens: the targets the loss counts (MLM ~15%, causal "
                    "LM all, T5 its targets); GFLOP/s: over the unit's training wall-clock, evaluations and "
                    "checkpoints included;",
                    f"T5's docstrings: greedy decoding with repetition penalty {REPETITION_PENALTY} (Hugging "
                    "Face's), in the word F1 and in the examples."])]
    return out


def _sample_blocks(shown: dict) -> list[tuple]:
    out = []
    if "gpt" in shown:
        out += [("h2", "GPT: samples from prompts"),
                ("p", "Sampled with temperature 0.8 and top-k 40 from the trained GPT (model.generate).")]
        out += [("pre", f"{row['prompt']}{row['continuation']}") for row in shown["gpt"]]
    if "bert" in shown:
        rows = [[row["sentence"], row["answer"],
                 ", ".join(f"{token} {p:.1%}" for token, p in row["predictions"]), row["baseline"]]
                for row in shown["bert"]]
        out += [("h2", "BERT: fill in the blank (held-out lines)"),
                ("table", ["sentence", "answer", "top 5 (probability)", "unigram guess"], rows)]
    if "t5" in shown:
        rows = [[row["function"], row["real"], row["generated"], row["baseline"]] for row in shown["t5"]]
        out += [("h2", "T5: docstrings for functions it never saw (held-out modules)"),
                ("table", ["function", "real first docstring line", "T5", "baseline: its name"], rows)]
    return out


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
        elif kind == "links":
            lines += [rest[0], ""] + [f"- [{text}]({target})" for text, target in rest[1]] + [""]
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
        elif kind == "links":
            items = "".join(f'<li><a href="{html.escape(target)}">{html.escape(text)}</a></li>'
                            for text, target in rest[1])
            body.append(f"<p>{html.escape(rest[0])}</p><ul>{items}</ul>")
        elif kind == "img":
            data = base64.b64encode((folder / rest[0]).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(rest[1])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(rest[1])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "vertical-align:top}th{background:#f3f3f3}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>trilogy demo</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def write_reports(out: Path, report: dict) -> None:
    """report.md, report.html and report.json in ``out`` (each replaced atomically)."""
    items = blocks(report)
    _write(out / "report.md", to_markdown(items))
    _write(out / "report.html", to_html(items, out))
    _write(out / "report.json", json.dumps(report, indent=1) + "\n")
