"""``trilogy demo``: train a BERT-, a GPT- and a T5-style model of the same size at the same training compute
(FLOPs), then report what each learned against its baseline, how the three answer one common question (fill
the blank), what each cost and how it attends."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..cli import UserError

# option -> (type, help); defaults live in DemoOptions, so --resume can tell what was given on the command line
OPTIONS = {
    "minutes": (float, "total time to aim for on this machine (default 10): the budget is planned from a "
                       "short probe so that training takes about 80%% of it"),
    "budget": (str, "what the families get the same amount of: flops (training FLOPs, default), tokens "
                    "(tokens seen) or time (wall-clock seconds)"),
    "flops": (float, "training FLOPs per family, e.g. 3e13 (default: as many as fit in --minutes here)"),
    "precision": (str, "fp32, bf16 (autocast) or auto (default: bf16 on a GPU; on a CPU with AVX512-BF16 or "
                       "AMX, whichever a few timed steps of each unit find faster; else fp32)"),
    "data": (str, "text to train on: a .txt file, a folder, a .jsonl with 'text', or shakespeare (default)"),
    "pairs": (str, "T5's second task: a .jsonl with 'source'/'target', or stdlib-docstrings (default)"),
    "seed": (int, "seed of the weights, batches and samples (default 0)"),
    "d_model": (int, "model width of all three (default 128)"),
    "layers": (int, "layers of BERT and GPT; T5 gets half in its encoder, half in its decoder (default 4)"),
    "heads": (int, "attention heads (default 4)"),
    "seq_len": (int, "tokens per sequence (default 128)"),
    "batch_size": (int, "sequences per step (default 16)"),
    "vocab_size": (int, "tokenizer vocabulary of each family (default 2048)"),
    "eval_batches": (int, "held-out batches per evaluation (default 10)"),
}


def run(args: argparse.Namespace) -> int:
    from ..train.precision import denormals_flushed

    with denormals_flushed():  # set before any parallel work: the thread pool's workers start with it
        return _demo(args)


def _demo(args: argparse.Namespace) -> int:
    from ..demo.report import SUMMARY_HEADERS, text_table
    from ..demo.run import run_demo
    from ..demo.seeds import HEADERS, rows, run_seeds
    from ..demo.state import DemoOptions, load_state

    out = Path(args.out)
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    if args.seeds > 1:
        first = out / f"seed-{given.get('seed', 0)}"
        options = _options(DemoOptions, asdict(load_state(first).options) if args.resume else None, given)
        summary = run_seeds(options, out, args.seeds, args.resume, run_demo)
        if args.json:
            print(json.dumps({"out": str(out), **summary}))
        else:
            print()
            print(text_table(HEADERS, rows(summary)))
            print(f"\nsummary: {out / 'seeds.md'}; each seed's report: {out}/seed-K/report.html")
        return 130 if summary["interrupted"] else 0
    options = _options(DemoOptions, asdict(load_state(out).options) if args.resume else None, given)
    report = run_demo(options, out, resume=args.resume)
    if args.json:
        print(json.dumps({"out": str(out), "interrupted": report["interrupted"], "options": asdict(options),
                          "budget": report["budget"], "common_ground": report["common_ground"],
                          "units": [{k: v for k, v in u.items() if k != "curve"} for u in report["units"]]}))
    else:
        print()
        print(text_table(SUMMARY_HEADERS, report["summary"]))
        print(f"\nreport: {out / 'report.html'} (and report.md); checkpoints: {out}/bert, {out}/gpt, {out}/t5")
    if report["interrupted"]:
        print(f"trilogy demo: interrupted; partial report written. Continue with: trilogy demo --resume --out {out}",
              file=sys.stderr)
        return 130
    return 0


def _options(options_class, saved: dict | None, given: dict):
    """The options of a new demo, or of the one being resumed (which the command line may not change)."""
    if saved is None:
        return options_class(**given)
    options = options_class(**saved)
    for name, value in given.items():
        if getattr(options, name) != value:
            raise UserError(f"--{name.replace('_', '-')} {value} differs from the demo being resumed "
                            f"({getattr(options, name)}); resume with the same options")
    return options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train BERT, GPT and T5 side by side under one budget and write a report",
        description=__doc__ + " Ctrl-C stops cleanly and writes a partial report; --resume continues.")
    for name, (kind, text) in OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="run the demo for N seeds (from --seed on, in OUT/seed-K) and report each figure as "
                             "mean and spread, with a verdict only where every seed agrees (default 1; meant "
                             "for a GPU: each seed takes the full --minutes)")
    parser.add_argument("--resume", action="store_true", help="continue the demo in --out where it stopped")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    parser.set_defaults(func=run)
