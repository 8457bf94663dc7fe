"""``trilogy demo``: its options and the function it runs."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..option_fields import UserError, option, options_of

if TYPE_CHECKING:
    from ..demo.state import DemoOptions

# DemoOptions' fields, documented for --help
DOCS = {
    "minutes": "total time to aim for on this machine: the budget is planned from a short probe so that training "
               "takes about 80% of it",
    "budget": "what the families get the same amount of: flops (training FLOPs), tokens (tokens seen) or time "
              "(wall-clock seconds)",
    "flops": "training FLOPs per family, e.g. 3e13 (default: as many as fit in --minutes here)",
    "precision": "fp32, bf16 (autocast) or auto: bf16 on a GPU; on a CPU with AVX512-BF16 or AMX, whichever a "
                 "few timed steps of each unit find faster; else fp32",
    "data": "text to train on: a .txt file, a folder, a .jsonl with 'text', or shakespeare",
    "pairs": "T5's second task: a .jsonl with 'source'/'target', or stdlib-docstrings",
    "seed": "seed of the weights, batches and samples",
    "d_model": "model width of all three",
    "layers": "layers of BERT and GPT; T5 gets half in its encoder, half in its decoder",
    "heads": "attention heads",
    "seq_len": "tokens per sequence",
    "batch_size": "sequences per step",
    "vocab_size": "tokenizer vocabulary of each family",
    "eval_batches": "held-out batches per evaluation",
}


@dataclass(kw_only=True)
class DemoCommandOptions:
    """The demo to run (``DemoOptions``, as far as the command line gives them), where, and how many times."""

    demo: dict[str, Any] = options_of("trilogy.demo.state:DemoOptions",
                                      **{name: {"doc": doc} for name, doc in DOCS.items()})
    out: str = option("runs/demo", "output folder")
    seeds: int = option(1, "run the demo for N seeds (from --seed on, in OUT/seed-K) and report each figure as "
                           "mean and spread, with a verdict only where every seed agrees; meant for a GPU: each "
                           "seed takes the full --minutes")
    resume: bool = option(False, "continue the demo in --out where it stopped")
    json: bool = option(False, "print the results as one JSON line at the end")

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")


def demo(options: DemoCommandOptions) -> int:
    """Train BERT, GPT and T5 side by side under one budget and write a report.

    Trains a BERT-, a GPT- and a T5-style model of the same size at the same training compute (FLOPs), then
    reports what each learned against its baseline, how the three answer one common question (fill the blank),
    what each cost and how it attends. Ctrl-C stops cleanly and writes a partial report; --resume continues."""
    from ..train.precision import denormals_flushed

    with denormals_flushed():  # set before any parallel work: the thread pool's workers start with it
        return _demo(options)


def _demo(options: DemoCommandOptions) -> int:
    from ..demo.report import SUMMARY_HEADERS, text_table
    from ..demo.run import run_demo
    from ..demo.seeds import HEADERS, rows, run_seeds
    from ..demo.state import load_state

    out = Path(options.out)
    if options.seeds > 1:
        first = out / f"seed-{options.demo.get('seed', 0)}"
        demo_options = _demo_options(asdict(load_state(first).options) if options.resume else None, options.demo)
        summary = run_seeds(demo_options, out, options.seeds, options.resume, run_demo)
        if options.json:
            print(json.dumps({"out": str(out), **summary}))
        else:
            print()
            print(text_table(HEADERS, rows(summary)))
            print(f"\nsummary: {out / 'seeds.md'}; each seed's report: {out}/seed-K/report.html")
        return 130 if summary["interrupted"] else 0
    demo_options = _demo_options(asdict(load_state(out).options) if options.resume else None, options.demo)
    report = run_demo(demo_options, out, resume=options.resume)
    if options.json:
        print(json.dumps({"out": str(out), "interrupted": report["interrupted"], "options": asdict(demo_options),
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


def _demo_options(saved: dict | None, given: dict[str, Any]) -> DemoOptions:
    """The options of a new demo, or of the one being resumed (which the command line may not change)."""
    from ..demo.state import DemoOptions

    if saved is None:
        return DemoOptions(**given)
    options = DemoOptions(**saved)
    for name, value in given.items():
        if getattr(options, name) != value:
            raise UserError(f"--{name.replace('_', '-')} {value} differs from the demo being resumed "
                            f"({getattr(options, name)}); resume with the same options")
    return options
