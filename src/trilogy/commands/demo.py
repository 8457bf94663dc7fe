"""``trilogy demo``: the notebook's use-case table, measured. One pre-training corpus; an encoder (BERT), a
decoder (GPT), a prefix LM and an encoder-decoder (T5) of the same size pre-trained on it at the same FLOPs,
each with its own objective; each adapted to each task the natural way at the same FLOPs per task; a task x
architecture matrix of held-out scores beside the baselines and the notebook's claims."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import UserError

# option -> (type, help); defaults live in DemoOptions, so --resume can tell what was given on the command line
OPTIONS = {
    "minutes": (float, "total time to aim for on this machine (default 12): about 40%% pre-training, 40%% "
                       "fine-tuning split equally over the tasks, the rest probing and evaluation"),
    "size": (str, "model and data sizes: tiny (default; 2 CPU cores), small or base (a GPU)"),
    "device": (str, "auto (default: cuda when there is one), cpu or cuda"),
    "precision": (str, "fp32, bf16 (autocast) or auto (default: bf16 on a GPU, else fp32)"),
    "seed": (int, "the first seed of the weights and batches (default 0)"),
    "max_train": (int, "train rows per task at most (default 1000)"),
    "max_eval": (int, "held-out rows per task at most (default 200)"),
}


def run(args: argparse.Namespace) -> int:
    from ..train.precision import denormals_flushed

    with denormals_flushed():  # set before any parallel work: the thread pool's workers start with it
        return _demo(args)


def parse_init(values: list[str]) -> dict[str, str]:
    """``ARCH=PATH_OR_NAME`` values as a dict."""
    init = {}
    for value in values:
        arch, sep, source = value.partition("=")
        if not sep or not arch or not source:
            raise UserError(f"--init takes ARCH=PATH_OR_NAME, got {value!r}")
        init[arch] = source
    return init


def _demo(args: argparse.Namespace) -> int:
    try:
        from ..demo.report import MATRIX_HEADERS, matrix_rows, text_table
        from ..demo.seeds import run_demo
        from ..demo.state import DemoOptions, load_state
    except ModuleNotFoundError as missing:
        if missing.name == "trilogy.objectives.task_adapters":
            raise UserError("trilogy demo needs trilogy.objectives.task_adapters, which this install lacks") from None
        raise

    out = Path(args.out)
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    if args.tasks is not None:
        given["tasks"] = [name for name in args.tasks.split(",") if name]
    if args.task:
        given["task_files"] = [str(Path(path)) for path in args.task]
    if args.init:
        given["init"] = parse_init(args.init)
    if args.resume:
        first = out if args.seeds == 1 else out / f"seed-{given.get('seed', 0)}"
        options = load_state(first).options
        for name, value in given.items():
            if getattr(options, name) != value:
                raise UserError(f"--{name.replace('_', '-')} {value} differs from the demo being resumed "
                                f"({getattr(options, name)}); resume with the same options")
    else:
        options = DemoOptions(**given)
    report = run_demo(options, out, args.seeds, resume=args.resume)
    if args.json:
        print(json.dumps({"out": str(out), "interrupted": report["interrupted"], "tasks": report["tasks"],
                          "pretraining": report["pretraining"]}))
    else:
        print()
        print(text_table(MATRIX_HEADERS, matrix_rows(report)))
        print(f"\nreport: {out / 'report.html'} (and report.md, report.json)")
    if report["interrupted"]:
        print(f"trilogy demo: interrupted; partial report written. Continue with: trilogy demo --resume --out {out}"
              + (f" --seeds {args.seeds}" if args.seeds > 1 else ""), file=sys.stderr)
        return 130
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the notebook's use-case table, measured: four architectures at equal compute on real tasks",
        description=__doc__ + " Ctrl-C stops cleanly and writes a partial report; --resume continues.")
    for name, (kind, text) in OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
    parser.add_argument("--tasks", default=None,
                        help="built-in tasks, comma-separated (default: polarity,pos,wordnet-span,plurals,spelling,"
                             "docstrings,lm)")
    parser.add_argument("--task", action="append", default=[], metavar="FILE.jsonl",
                        help="add a task of your own (repeatable; row formats in docs/demo.md)")
    parser.add_argument("--init", action="append", default=[], metavar="ARCH=PATH_OR_NAME",
                        help="start ARCH (encoder, decoder, prefix-lm, encoder-decoder) from a checkpoint (a Hugging "
                             "Face folder or a name in its cache) with its own tokenizer instead of pre-training it")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="run the demo for N seeds (from --seed on, in OUT/seed-K) and report each cell as "
                             "mean ± spread (max - min) (default 1; each seed takes the full --minutes)")
    parser.add_argument("--resume", action="store_true", help="continue the demo in --out where it stopped")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    parser.set_defaults(func=run)
