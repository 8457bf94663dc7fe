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
    "minutes": "plan the budget from step times measured on this machine to take about this long (40% "
               "pre-training, 40% fine-tuning split equally over the tasks) instead of the size's fixed FLOPs "
               "(the default, the same on every machine and run)",
    "pretrain_flops": "each architecture's pre-training FLOPs (default: the size's; tiny 2.6e12)",
    "finetune_steps": "each task's fine-tuning FLOPs, as this many of the decoder's steps on it (default: the "
                      "size's; tiny 600)",
    "size": "model and data sizes: tiny (2 CPU cores), small or base (a GPU)",
    "device": "auto (cuda when there is one), cpu or cuda",
    "precision": "fp32, bf16 (autocast) or auto: bf16 on a GPU, else fp32",
    "seed": "the first seed of the weights and batches",
    "tasks": "built-in tasks (polarity pos wordnet-span plurals spelling docstrings lm)",
    "task_files": "tasks of your own, JSONL files (row formats in docs/demo.md)",
    "init": "ARCH=PATH_OR_NAME: start ARCH (encoder, decoder, prefix-lm, encoder-decoder) from a checkpoint (a "
            "Hugging Face folder or a name in its cache) with its own tokenizer instead of pre-training it",
    "max_train": "train rows per task at most",
    "max_eval": "held-out rows per task at most",
}

FIELDS: dict[str, dict[str, Any]] = {name: {"doc": doc} for name, doc in DOCS.items()}
FIELDS["task_files"].update(aliases=("--task",), metavar="FILE.jsonl")
FIELDS["init"].update(metavar="ARCH=PATH_OR_NAME")


@dataclass(kw_only=True)
class DemoCommandOptions:
    """The demo to run (``DemoOptions``, as far as the command line gives them), where, and how many times."""

    demo: dict[str, Any] = options_of("trilogy.demo.state:DemoOptions", **FIELDS)
    out: str = option("runs/demo", "output folder")
    seeds: int = option(1, "run the demo for N seeds (from --seed on, in OUT/seed-K) and report each cell as mean "
                           "± spread (max - min); every seed trains on the first seed's FLOP budget")
    resume: bool = option(False, "continue the demo in --out where it stopped")
    json: bool = option(False, "print the results as one JSON line at the end")

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")


def demo(options: DemoCommandOptions) -> int:
    """The notebook's use-case table, measured: four architectures at equal compute on real tasks.

    One pre-training corpus; an encoder (BERT), a decoder (GPT), a prefix LM and an encoder-decoder (T5) of the
    same size pre-trained on it at the same FLOPs, each with its own objective; each adapted to each task the
    natural way at the same FLOPs per task; a task x architecture matrix of held-out scores beside the baselines
    and the notebook's claims. Ctrl-C stops cleanly and writes a partial report; --resume continues."""
    from ..train.precision import denormals_flushed

    with denormals_flushed():  # set before any parallel work: the thread pool's workers start with it
        return _demo(options)


def _demo(options: DemoCommandOptions) -> int:
    try:
        from ..demo.report import MATRIX_HEADERS, matrix_rows, text_table
        from ..demo.run import join
        from ..demo.seeds import run_demo
        from ..demo.state import load_state
        from ..train.distributed import teardown
    except ModuleNotFoundError as missing:
        if missing.name == "trilogy.objectives.task_adapters":
            raise UserError("trilogy demo needs trilogy.objectives.task_adapters, which this install lacks") from None
        raise

    out = Path(options.out)
    first = out if options.seeds == 1 else out / f"seed-{options.demo.get('seed', 0)}"
    demo_options = _demo_options(asdict(load_state(first).options) if options.resume else None, options.demo)
    dist = join(demo_options)  # under torchrun: this process's rank
    try:
        report = run_demo(demo_options, out, dist, options.seeds, resume=options.resume)
    finally:
        teardown()
    if report is None:  # a rank other than the main one, which reports
        return 0
    if options.json:
        print(json.dumps({"out": str(out), "interrupted": report["interrupted"], "tasks": report["tasks"],
                          "pretraining": report["pretraining"]}))
    else:
        print()
        print(text_table(MATRIX_HEADERS, matrix_rows(report)))
        print(f"\nreport: {out / 'report.html'} (and report.md, report.json)")
    if report["interrupted"]:
        print(f"trilogy demo: interrupted; partial report written. Continue with: trilogy demo --resume --out {out}"
              + (f" --seeds {options.seeds}" if options.seeds > 1 else ""), file=sys.stderr)
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
