"""``trilogy train``: pretrain or fine-tune one of the three families on your text, resumable, on one process
or under ``torchrun`` on several."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import torch

from .. import option_fields
from ..cli import UserError
from ..config import ARCHS
from ..train.options import RUN_FILE, RunOptions


def run(args: argparse.Namespace) -> int:
    from ..train.precision import denormals_flushed

    with denormals_flushed():  # set before any parallel work: the thread pool's workers start with it
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from ..train.distributed import setup, teardown
    from ..train.loop import NonFiniteLoss
    from ..train.session import run_training
    from ..train.state import disk_full, is_disk_full

    given = option_fields.given(args, [field.name for field in fields(RunOptions)])
    if args.resume is not None:
        out_dir = Path(args.out or args.resume)
        if Path(args.resume).resolve() != out_dir.resolve():
            raise UserError("--resume DIR continues the run in DIR; --out, when given, must be the same folder")
        run_options = RunOptions.load(out_dir)
        for name, value in given.items():
            if getattr(run_options, name) != value:
                raise UserError(f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                                f"({getattr(run_options, name)}); resume with the same options")
    else:
        if args.out is None:
            raise UserError("--out DIR is required (or --resume DIR)")
        if "arch" not in given:
            raise UserError(f"--arch is required: one of {', '.join(ARCHS)}")
        out_dir = Path(args.out)
        run_options = RunOptions(**given)
    if args.threads is not None:
        if args.threads <= 0:
            raise UserError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    dist = setup(args.device)
    try:
        result = run_training(run_options, out_dir, dist, resume=args.resume is not None)
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
        if args.json:
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


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on your text (MLM, causal LM, span corruption, seq2seq); resumable",
        description=__doc__ + " Example: trilogy train --arch decoder --data shakespeare --max-steps 200 "
                              "--out runs/gpt",
    )
    option_fields.add_options(parser, RunOptions)
    parser.add_argument("--dtype", dest="precision", type=str, default=None, help="the same as --precision")
    parser.add_argument("--out", help="output folder: a checkpoint trilogy.from_pretrained loads, plus "
                                      "checkpoints/, metrics.jsonl, loss.png")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint "
                                                        "(bitwise the same result as an uninterrupted run on CPU)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available, else cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's, one per core). On a busy "
                                                    "machine 1 can be much faster; resume with the same value "
                                                    "for bitwise-identical results")
    parser.add_argument("--json", action="store_true", help="print the final summary as one JSON line")
    parser.set_defaults(func=run)
