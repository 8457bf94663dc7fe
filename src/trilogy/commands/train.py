"""``trilogy train``: its options and the function it runs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ARCHS
from ..option_fields import UserError, option, options_of
from ..train.options import RUN_FILE, RunOptions


@dataclass(kw_only=True)
class TrainOptions:
    """The run to train (``RunOptions``, as far as the command line gives them), where, and on what."""

    run: dict[str, Any] = options_of(RunOptions, precision={"aliases": ("--dtype",)})
    out: str | None = option(None, "output folder: a checkpoint trilogy.from_pretrained loads, plus checkpoints/, "
                                   "metrics.jsonl, loss.png")
    resume: str | None = option(None, "continue the run in DIR from its latest checkpoint (bitwise the same "
                                      "result as an uninterrupted run on CPU)", metavar="DIR")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available, else cpu)")
    threads: int | None = option(None, "CPU threads (default: torch's, one per core). On a busy machine 1 can be "
                                       "much faster; resume with the same value for bitwise-identical results")
    json: bool = option(False, "print the final summary as one JSON line")

    def __post_init__(self) -> None:
        if self.resume is not None:
            if self.out is not None and Path(self.resume).resolve() != Path(self.out).resolve():
                raise UserError("--resume DIR continues the run in DIR; --out, when given, must be the same folder")
        elif self.out is None:
            raise UserError("--out DIR is required (or --resume DIR)")
        elif "arch" not in self.run:
            raise UserError(f"--arch is required: one of {', '.join(ARCHS)}")
        if self.threads is not None and self.threads <= 0:
            raise UserError(f"--threads must be positive, got {self.threads}")


def train(options: TrainOptions) -> int:
    """Train a model on your text (MLM, causal LM, span corruption, seq2seq); resumable.

    Pretrains or fine-tunes one of the three families on your text, resumable, on one process or under
    ``torchrun`` on several. Example: trilogy train --arch decoder --data shakespeare --max-steps 200 --out
    runs/gpt"""
    from ..train.precision import denormals_flushed

    with denormals_flushed():  # set before any parallel work: the thread pool's workers start with it
        return _train(options)


def _train(options: TrainOptions) -> int:
    from ..train.distributed import setup, teardown
    from ..train.loop import NonFiniteLoss
    from ..train.session import run_training
    from ..train.state import disk_full, is_disk_full

    if options.resume is not None:
        out_dir = Path(options.out or options.resume)
        run_options = RunOptions.load(out_dir)
        for name, value in options.run.items():
            if getattr(run_options, name) != value:
                raise UserError(f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                                f"({getattr(run_options, name)}); resume with the same options")
    else:
        out_dir = Path(options.out)
        run_options = RunOptions(**options.run)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    dist = setup(options.device)
    try:
        result = run_training(run_options, out_dir, dist, resume=options.resume is not None)
    except NonFiniteLoss as error:
        print(f"trilogy train: stopped: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the disk filled up outside a checkpoint (metrics.jsonl, loss.png): the same line
        if not is_disk_full(error):
            raise
        raise disk_full(error, f"writing {error.filename or f'in {out_dir}'}", out_dir,
                        resumable=(out_dir / RUN_FILE).is_file()) from error
    finally:
        teardown()
    if dist.is_main:
        summary = dict(out=str(out_dir), step=result.step, train_loss=result.last_loss,
                       validation=result.last_eval, best_step=result.best_step)
        if options.json:
            print(json.dumps(summary))
        elif result.last_loss is None:
            print(f"{out_dir} had already finished its {result.step} steps; nothing to do")
        else:
            print(f"trained {result.step} steps; last training loss {result.last_loss:.4f}; saved to {out_dir} "
                  f"(trilogy.from_pretrained({str(out_dir)!r}))")
            if result.last_eval:
                print("validation: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in result.last_eval.items()))
    return 0
