"""``trilogy eval``: its options and the function it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..objectives import OBJECTIVES, default_objective, get_objective
from ..option_fields import UserError, option


@dataclass(kw_only=True)
class EvalOptions:
    """The checkpoint ``trilogy eval`` evaluates, on what data, and how."""

    path: str = option(doc="a folder written by `trilogy train` (or any checkpoint with tokenizer.json, by folder "
                           "or Hugging Face model name)", positional=True)
    data: str | None = option(None, "the corpus (default: the one the run trained on)")
    objective: str | None = option(None, f"{', '.join(OBJECTIVES)} (default: the run's)")
    seq_len: int | None = option(None, "tokens per sequence (default: the run's, else 128)")
    batch_size: int = option(16, "sequences per batch")
    max_batches: int | None = option(None, "stop after this many batches (default: the whole validation split)")
    repetition_penalty: float = option(1.0, "seq2seq: penalise tokens already generated (Hugging Face's "
                                            "repetition_penalty; 1.0 = plain greedy)")
    device: str | None = option(None, "cpu, cuda, ... (default: cuda if available, else cpu)")
    threads: int | None = option(None, "CPU threads (default: torch's)")
    json: bool = option(False, "print one JSON object")

    def __post_init__(self) -> None:
        if not self.repetition_penalty > 0:
            raise UserError(f"--repetition-penalty must be > 0 (1.0 = off), got {self.repetition_penalty}")


def evaluate(options: EvalOptions) -> int:
    """Validation metrics of a trained model, with baselines.

    The metrics that training prints, here for any trained checkpoint, with the baselines a number should be
    compared to: the unigram-frequency guess for MLM, copying the function name for stdlib-docstrings."""
    from ..convert import from_pretrained
    from ..convert.hub import resolve
    from ..data import load_corpus
    from ..train.baselines import baselines
    from ..train.distributed import setup
    from ..train.evaluate import evaluate as validation_metrics
    from ..train.options import RUN_FILE
    from ..train.session import label_names, objective_corpus

    folder = resolve(options.path)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    trained = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    model = from_pretrained(folder)
    if getattr(model, "tokenizer", None) is None:
        raise UserError(f"{folder} has no tokenizer.json; evaluation needs the tokenizer the model was trained with")
    data = options.data or trained.get("data")
    if data is None:
        raise UserError("--data is required (this folder has no run.json saying what it was trained on)")
    corpus = load_corpus(data)
    objective = options.objective or trained.get("objective") or default_objective(model.config.arch, corpus.kind)
    corpus = objective_corpus(objective, corpus, data)
    seq_len = options.seq_len or trained.get("seq_len") or 128
    dist = setup(options.device)
    model.to(dist.device)
    task = get_objective(objective)
    labels = label_names(corpus) if task.labelled else None
    metrics = validation_metrics(model, objective, corpus, model.tokenizer, seq_len, options.batch_size,
                                 options.max_batches, dist, labels, repetition_penalty=options.repetition_penalty)
    reference = baselines(objective, corpus, model.tokenizer, seq_len, options.batch_size, options.max_batches)
    report = dict(path=str(folder), data=data, objective=objective, seq_len=seq_len, metrics=metrics,
                  baselines=reference)
    if task.generates:
        report["generation"] = {"greedy": True, "repetition_penalty": options.repetition_penalty}
    if options.json:
        print(json.dumps(report))
        return 0
    print(f"{folder} on {data} (validation split), objective {objective}, seq_len {seq_len}")
    if task.generates:
        print(f"  generations: greedy, repetition penalty {options.repetition_penalty:g}")
    for name, value in metrics.items():
        print(f"  {name:15s} {value:.4f}" if isinstance(value, float) else f"  {name:15s} {value}")
    for name, values in reference.items():
        print(f"  baseline: {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return 0
