"""From the options of ``trilogy train`` to a running loop: corpus, tokenizer, model, batches, loss and
evaluation, and the file ``run.json`` that lets ``--resume DIR`` rebuild exactly the same run."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from ..config import PRESETS, ModelConfig
from ..data import load_corpus, special_tokens, train_tokenizer
from ..data.corpus import Corpus
from ..errors import TrilogyError
from ..models import Tokenization, build_model
from ..objectives import Batches, compute_loss, get_objective
from .distributed import Distributed
from .evaluate import evaluate
from .loop import TrainResult, TrainSettings, train
from .options import RunOptions
from .precision import resolve_precision
from .state import latest_checkpoint


def train_settings(options: RunOptions, device: torch.device) -> TrainSettings:
    """The loop's settings from the run's options, the precision resolved for ``device``."""
    precision = resolve_precision(options.precision, device)
    warmup = options.warmup_steps if options.warmup_steps is not None else min(100, max(1, options.max_steps // 10))
    return TrainSettings(
        max_steps=options.max_steps, lr=options.lr, warmup_steps=warmup, min_lr_ratio=options.min_lr_ratio,
        weight_decay=options.weight_decay, clip_norm=options.clip_norm, grad_accum=options.grad_accum,
        precision=precision, save_every=options.save_every, keep_last=options.keep_last,
        eval_every=options.eval_every, fsdp=options.fsdp,
    )


def model_config(options: RunOptions, tokenizer: Tokenizer, objective: str, num_labels: int) -> ModelConfig:
    """The preset, sized to the tokenizer and sequence length, with the tokenizer's special ids and the head
    the objective trains (a prefix LM for ``prefix-lm``)."""
    special = special_tokens(tokenizer)
    changes = dict(
        vocab_size=tokenizer.get_vocab_size(), head=get_objective(objective).head,
        max_seq_len=max(options.seq_len, PRESETS[options.preset]["max_seq_len"]),
        pad_token_id=special.get("pad"), bos_token_id=special.get("bos"), eos_token_id=special.get("eos"),
    )
    if get_objective(objective).labelled:
        changes["num_labels"] = num_labels
    if get_objective(objective).prefix_lm:
        changes["prefix_lm"] = True
    for name in ("dropout", "d_model", "n_layers", "n_heads", "d_ff", "position"):
        if getattr(options, name) is not None:
            changes[name] = getattr(options, name)
    config = ModelConfig.from_preset(options.preset, **changes)
    if config.structure.has_source:
        config = config.replace(decoder_start_token_id=special.get("decoder_start", special.get("pad")))
    return config


def run_training(options: RunOptions, out_dir: Path, dist: Distributed, resume: bool = False) -> TrainResult:
    """Build the run ``options`` describe and train it; with ``resume`` continue the run in ``out_dir``."""
    out_dir = Path(out_dir)
    start = load_start(options) if options.init is not None else None
    corpus = load_corpus(options.data)
    options = options.resolved(corpus.kind, fine_tuning=start is not None)
    data = objective_corpus(options.objective, corpus, options.data)
    tokenizer_file = out_dir / "tokenizer.json"
    if not (resume and tokenizer_file.is_file()):
        if not resume and latest_checkpoint(out_dir) is not None:
            raise TrilogyError(f"{out_dir} already holds a training run; continue it with --resume {out_dir} "
                               "or choose another --out")
        if dist.is_main:  # one rank trains and writes it, the others read it back
            if options.tokenizer is not None:
                tokenizer = Tokenizer.from_file(options.tokenizer)
            elif start is not None:
                tokenizer = start.tokenizer
            else:
                tokenizer = train_tokenizer(options.arch, corpus.texts("train"), options.vocab_size)
            out_dir.mkdir(parents=True, exist_ok=True)
            temp = out_dir / ".tokenizer.json.tmp"
            try:  # written by Python, as tokenizer.save would, so that a full disk is an OSError (ENOSPC)
                temp.write_text(tokenizer.to_str(pretty=True), encoding="utf-8")
                os.replace(temp, tokenizer_file)
            finally:
                temp.unlink(missing_ok=True)
            (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        dist.barrier()
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if dist.is_main:
        options.save(out_dir)

    labels = label_names(corpus) if get_objective(options.objective).labelled else None
    torch.manual_seed(options.seed)
    if start is None:
        model = build_model(model_config(options, tokenizer, options.objective, len(labels or ())),
                            tokenization=Tokenization(tokenizer),
                            checkpoint_activations=options.checkpoint_activations)
    else:
        model = fine_tuned_model(start, options, tokenizer, len(labels or ()))
    model = model.to(dist.device)
    torch.manual_seed(options.seed + 1 + dist.rank)  # dropout draws differ between ranks
    batches = Batches(options.objective, data.train, tokenizer, options.seq_len,
                      options.batch_size * options.grad_accum * dist.world_size, options.seed, rank=dist.rank,
                      world_size=dist.world_size, label_names=labels)

    def loss_fn(model, batch):
        return compute_loss(options.objective, model, batch)

    def run_eval(model):
        return evaluate(model, options.objective, data, tokenizer, options.seq_len, options.batch_size,
                        options.eval_batches, dist, labels)

    def save_model_files(model, folder):
        model.save_pretrained(folder)

    return train(model, batches, loss_fn, train_settings(options, dist.device), out_dir, save_model_files, run_eval,
                 dist, resume=resume, run_info=asdict(options))


def objective_corpus(objective: str, corpus: Corpus, data: str) -> Corpus:
    """What ``objective`` trains on in ``corpus``: the corpus itself, or for a text objective on a pairs
    corpus its sources (pre-training on the code before fine-tuning on the pairs). The tokenizer is still
    trained on the whole corpus, targets included, so that the fine-tuning can keep it."""
    reads = get_objective(objective).corpus_kind
    if reads == "pairs" and corpus.kind != "pairs":
        raise TrilogyError(f"objective {objective!r} needs source/target pairs (.jsonl); --data {data} holds text")
    return corpus.sources() if reads == "text" and corpus.kind == "pairs" else corpus


def load_start(options: RunOptions):
    """The checkpoint ``--init`` names, with its tokenizer (required unless --tokenizer is given)."""
    from ..convert import from_pretrained

    start = from_pretrained(options.init)
    if start.arch != options.arch:
        raise TrilogyError(f"--init {options.init} holds a model of the {start.arch} family; "
                           f"--arch {options.arch} cannot start from it")
    if options.tokenizer is None and start.tokenizer is None:
        raise TrilogyError(f"--init {options.init} has no tokenizer.json; pass the one it was trained with "
                           "as --tokenizer")
    return start


def fine_tuned_model(start, options: RunOptions, tokenizer: Tokenizer, num_labels: int):
    """A model with ``start``'s architecture, weights and chat template, ``tokenizer``, and the head
    ``options.objective`` trains. A head the checkpoint lacks (e.g. a classifier on a masked-LM model) starts
    freshly initialised."""
    if tokenizer.get_vocab_size() != start.config.vocab_size:
        raise TrilogyError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but --init {options.init} was "
                           f"trained with {start.config.vocab_size}")
    if options.seq_len > start.config.max_seq_len and start.config.position in ("learned", "sinusoidal"):
        raise TrilogyError(f"--seq-len {options.seq_len} exceeds the {start.config.max_seq_len} positions of "
                           f"--init {options.init}")
    task = get_objective(options.objective)
    changes: dict[str, Any] = {"head": task.head}
    if task.labelled:
        changes["num_labels"] = num_labels
    if task.prefix_lm:
        changes["prefix_lm"] = True
    if options.dropout is not None:
        changes["dropout"] = options.dropout
    model = build_model(start.config.replace(**changes), tokenization=Tokenization(tokenizer, start.chat_template),
                        checkpoint_activations=options.checkpoint_activations)
    same_head = model.config.head == start.config.head and model.config.num_labels == start.config.num_labels
    missing, unexpected = model.load_state_dict(start.state_dict(), strict=same_head)
    if missing or unexpected:
        print(f"--init {options.init}: {len(missing)} head tensors start fresh, {len(unexpected)} of the "
              "checkpoint's head are not used", file=sys.stderr)
    return model


def label_names(corpus) -> list[str]:
    """The classes of a classification corpus: its distinct training targets, sorted."""
    return sorted({target for _, target in corpus.train})
