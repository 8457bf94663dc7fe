"""``trilogy eval DIR``: the validation metrics of a trained checkpoint (the ones training prints), with the
baselines a number should be compared to: the unigram-frequency guess for MLM, copying the function name for
stdlib-docstrings."""

from __future__ import annotations

import argparse
import json

import torch

from ..cli import UserError
from ..objectives import OBJECTIVES, default_objective, get_objective


def run(args: argparse.Namespace) -> int:
    from ..convert import from_pretrained
    from ..convert.hub import resolve
    from ..data import load_corpus
    from ..train.baselines import baselines
    from ..train.distributed import setup
    from ..train.evaluate import evaluate
    from ..train.options import RUN_FILE
    from ..train.session import label_names, objective_corpus

    folder = resolve(args.path)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.repetition_penalty > 0:
        raise UserError(f"--repetition-penalty must be > 0 (1.0 = off), got {args.repetition_penalty}")
    trained = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    model = from_pretrained(folder)
    if getattr(model, "tokenizer", None) is None:
        raise UserError(f"{folder} has no tokenizer.json; evaluation needs the tokenizer the model was trained with")
    data = args.data or trained.get("data")
    if data is None:
        raise UserError("--data is required (this folder has no run.json saying what it was trained on)")
    corpus = load_corpus(data)
    objective = args.objective or trained.get("objective") or default_objective(model.config.arch, corpus.kind)
    corpus = objective_corpus(objective, corpus, data)
    seq_len = args.seq_len or trained.get("seq_len") or 128
    dist = setup(args.device)
    model.to(dist.device)
    task = get_objective(objective)
    labels = label_names(corpus) if task.labelled else None
    metrics = evaluate(model, objective, corpus, model.tokenizer, seq_len, args.batch_size, args.max_batches, dist,
                       labels, repetition_penalty=args.repetition_penalty)
    reference = baselines(objective, corpus, model.tokenizer, seq_len, args.batch_size, args.max_batches)
    report = dict(path=str(folder), data=data, objective=objective, seq_len=seq_len, metrics=metrics,
                  baselines=reference)
    if task.generates:
        report["generation"] = {"greedy": True, "repetition_penalty": args.repetition_penalty}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{folder} on {data} (validation split), objective {objective}, seq_len {seq_len}")
    if task.generates:
        print(f"  generations: greedy, repetition penalty {args.repetition_penalty:g}")
    for name, value in metrics.items():
        print(f"  {name:15s} {value:.4f}" if isinstance(value, float) else f"  {name:15s} {value}")
    for name, values in reference.items():
        print(f"  baseline: {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="validation metrics of a trained model, with baselines",
                                   description=__doc__)
    parser.add_argument("path", help="a folder written by `trilogy train` (or any checkpoint with tokenizer.json, "
                                     "by folder or Hugging Face model name)")
    parser.add_argument("--data", help="the corpus (default: the one the run trained on)")
    parser.add_argument("--objective", help=f"{', '.join(OBJECTIVES)} (default: the run's)")
    parser.add_argument("--seq-len", type=int, help="tokens per sequence (default: the run's, else 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per batch (default 16)")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="stop after this many batches (default: the whole validation split)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="seq2seq: penalise tokens already generated (Hugging Face's repetition_penalty; "
                             "default 1.0 = plain greedy)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
