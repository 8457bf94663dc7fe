"""``trilogy train``: pretrain or fine-tune one of the three families on your text, resumable, on one process
or under ``torchrun`` on several."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..cli import UserError
from ..config import ARCHS

# option -> (type, help); defaults live in RunOptions, so --resume can tell what was given on the command line
OPTIONS = {
    "arch": (str, f"model family: {', '.join(ARCHS)}"),
    "data": (str, "a .txt file, a folder of text files, a .jsonl file (text or source/target), "
                  "'shakespeare' or 'stdlib-docstrings' (default shakespeare)"),
    "preset": (str, "model preset (default: tiny-bert / tiny-gpt2 / tiny-t5 for the family); see `trilogy presets`"),
    "objective": (str, "mlm, clm, span, denoise, seq2seq or classification (default: from the family and "
                       "the data); a text objective on pairs trains on their sources"),
    "max_steps": (int, "optimizer steps (default 1000)"),
    "batch_size": (int, "sequences per process per micro-batch (default 16)"),
    "seq_len": (int, "tokens per sequence (default 128)"),
    "vocab_size": (int, "tokenizer vocabulary, trained on the training split (default 2048)"),
    "tokenizer": (str, "use this tokenizer.json (of the family's kind) instead of training one on the data"),
    "init": (str, "fine-tune: start from this checkpoint's weights, architecture and tokenizer (a trilogy "
                  "run, a Hugging Face model folder, or a model name in the Hugging Face cache)"),
    "seed": (int, "seed of the weights, batches and dropout (default 0)"),
    "lr": (float, "peak learning rate (default 1e-3)"),
    "warmup_steps": (int, "linear warmup steps (default max_steps/10, at most 100)"),
    "min_lr_ratio": (float, "cosine decays to this fraction of the peak (default 0.1)"),
    "weight_decay": (float, "AdamW weight decay of the weight matrices (default 0.1)"),
    "clip_norm": (float, "gradient clipping norm (default 1.0)"),
    "grad_accum": (int, "micro-batches per optimizer step (default 1)"),
    "precision": (str, "fp32, bf16 (autocast) or auto (default): bf16 on a GPU that supports it and on a CPU with "
                       "AVX512-BF16 or AMX, else fp32"),
    "dropout": (float, "dropout (default: the preset's)"),
    "d_model": (int, "override the preset's width"),
    "n_layers": (int, "override the preset's number of layers"),
    "n_heads": (int, "override the preset's number of heads"),
    "d_ff": (int, "override the preset's MLP width"),
    "position": (str, "override the preset's positions: learned, sinusoidal, rope or none (relative: T5)"),
    "save_every": (int, "checkpoint every K steps (default 0: at the end only)"),
    "keep_last": (int, "checkpoints to keep besides the best (default 2)"),
    "eval_every": (int, "evaluate on the validation split every M steps (default 0: at the end only)"),
    "eval_batches": (int, "at most this many validation batches per evaluation (default 50)"),
}
SWITCHES = {
    "checkpoint_activations": "recompute each layer's activations in backward instead of storing them "
                              "(activation memory down several-fold for about one more forward pass)",
    "fsdp": "under torchrun: shard parameters, gradients and optimizer state over the processes (FSDP2); "
            "checkpoints are saved whole",
}


def run(args: argparse.Namespace) -> int:
    from ..train.distributed import setup, teardown
    from ..train.loop import NonFiniteLoss
    from ..train.session import RunOptions, run_training

    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    given.update({name: True for name in SWITCHES if getattr(args, name)})
    if args.resume is not None:
        out_dir = Path(args.out or args.resume)
        if Path(args.resume).resolve() != out_dir.resolve():
            raise UserError("--resume DIR continues the run in DIR; --out, when given, must be the same folder")
        options = RunOptions.load(out_dir)
        for name, value in given.items():
            if getattr(options, name) != value:
                raise UserError(f"--{name.replace('_', '-')} {value} differs from the run being resumed "
                                f"({getattr(options, name)}); resume with the same options")
    else:
        if args.out is None:
            raise UserError("--out DIR is required (or --resume DIR)")
        if "arch" not in given:
            raise UserError(f"--arch is required: one of {', '.join(ARCHS)}")
        out_dir = Path(args.out)
        options = RunOptions(**given)
    if args.threads is not None:
        if args.threads <= 0:
            raise UserError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    dist = setup(args.device)
    try:
        result = run_training(options, out_dir, dist, resume=args.resume is not None)
    except NonFiniteLoss as error:
        print(f"trilogy train: stopped: {error}", file=sys.stderr)
        return 1
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
    for name, (kind, text) in OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
    for name, text in SWITCHES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=text)
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
