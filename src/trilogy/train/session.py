"""From the options of ``trilogy train`` to a running loop: corpus, tokenizer, model, batches, loss and
evaluation, and the file ``run.json`` that lets ``--resume DIR`` rebuild exactly the same run."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..config import POSITIONS, PRESETS, ModelConfig
from ..data import load_corpus, special_tokens, train_tokenizer
from ..data.corpus import Corpus
from ..errors import TrilogyError
from ..models import build_model
from ..objectives import Batches, compute_loss
from .distributed import Distributed
from .evaluate import evaluate
from .loop import TrainResult, TrainSettings, train
from .precision import PRECISIONS, resolve_precision
from .state import latest_checkpoint

RUN_FILE = "run.json"
DEFAULT_PRESET = {"encoder": "tiny-bert", "decoder": "tiny-gpt2", "encoder-decoder": "tiny-t5"}
OBJECTIVES = {  # (arch, corpus kind) -> objective
    ("encoder", "text"): "mlm", ("encoder", "pairs"): "classification",
    ("decoder", "text"): "clm", ("decoder", "pairs"): "clm",
    ("encoder-decoder", "text"): "span", ("encoder-decoder", "pairs"): "seq2seq",
}
ARCH_FOR = {"mlm": "encoder", "classification": "encoder", "clm": "decoder", "span": "encoder-decoder",
            "denoise": "encoder-decoder", "seq2seq": "encoder-decoder"}
PAIRS = ("seq2seq", "classification")  # objectives on (source, target) pairs; the others on text
# what --init decides instead
ARCHITECTURE_OPTIONS = ("preset", "d_model", "n_layers", "n_heads", "d_ff", "position")
HEAD_FOR = {"mlm": "mlm", "classification": "sequence-classification", "clm": "lm", "span": "lm", "denoise": "lm",
            "seq2seq": "lm"}


@dataclass
class RunOptions:
    """Everything that decides what a run computes. Saved as run.json; ``--resume`` reads it back."""

    arch: str
    data: str = "shakespeare"
    preset: str | None = None  # default: the tiny preset of the family
    objective: str | None = None  # default: from the family and the corpus kind (OBJECTIVES)
    max_steps: int = 1000
    batch_size: int = 16  # per process
    seq_len: int = 128
    vocab_size: int = 2048
    tokenizer: str | None = None  # a tokenizer.json to use instead of training one
    init: str | None = None  # a checkpoint folder to start from (fine-tuning): its weights, config and tokenizer
    seed: int = 0
    lr: float = 1e-3
    warmup_steps: int | None = None  # default: a tenth of max_steps, at most 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    grad_accum: int = 1
    precision: str = "auto"  # auto: bf16 where the GPU or CPU runs it fast, else fp32 (train/precision.py)
    dropout: float | None = None  # default: the preset's
    d_model: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None
    position: str | None = None  # default: the preset's
    save_every: int = 0  # 0: at the end only
    keep_last: int = 2
    eval_every: int = 0  # 0: at the end only
    eval_batches: int = 50
    checkpoint_activations: bool = False
    fsdp: bool = False

    def __post_init__(self) -> None:
        if self.arch not in DEFAULT_PRESET:
            raise TrilogyError(f"--arch must be one of {', '.join(DEFAULT_PRESET)}, got {self.arch!r}")
        if self.objective is not None and self.objective not in HEAD_FOR:
            raise TrilogyError(f"--objective must be one of {', '.join(HEAD_FOR)}, got {self.objective!r}")
        if self.objective is not None and ARCH_FOR[self.objective] != self.arch:
            raise TrilogyError(f"objective {self.objective!r} trains {ARCH_FOR[self.objective]} models, "
                             f"not {self.arch}")
        if self.preset is not None and self.preset not in PRESETS:
            raise TrilogyError(f"unknown preset {self.preset!r}; known presets: {', '.join(sorted(PRESETS))}")
        if self.preset is not None and PRESETS[self.preset]["arch"] != self.arch:
            raise TrilogyError(f"preset {self.preset!r} is a {PRESETS[self.preset]['arch']} model, not {self.arch}")
        for name in ("max_steps", "batch_size", "seq_len", "vocab_size", "grad_accum", "keep_last", "eval_batches"):
            if getattr(self, name) <= 0:
                raise TrilogyError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("save_every", "eval_every"):
            if getattr(self, name) < 0:
                raise TrilogyError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.position is not None and self.position not in POSITIONS:
            raise TrilogyError(f"--position must be one of {', '.join(POSITIONS)}, got {self.position!r}")
        if self.precision not in PRECISIONS:
            raise TrilogyError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.lr <= 0:
            raise TrilogyError(f"--lr must be positive, got {self.lr}")
        if self.init is not None:
            given = [name for name in ARCHITECTURE_OPTIONS if getattr(self, name) is not None]
            if given:
                raise TrilogyError(f"--init {self.init} gives the architecture; drop "
                                 + ", ".join(f"--{name.replace('_', '-')}" for name in given))

    def settings(self, device: torch.device) -> TrainSettings:
        precision = resolve_precision(self.precision, device)
        warmup = self.warmup_steps if self.warmup_steps is not None else min(100, max(1, self.max_steps // 10))
        return TrainSettings(
            max_steps=self.max_steps, lr=self.lr, warmup_steps=warmup, min_lr_ratio=self.min_lr_ratio,
            weight_decay=self.weight_decay, clip_norm=self.clip_norm, grad_accum=self.grad_accum,
            precision=precision, save_every=self.save_every, keep_last=self.keep_last, eval_every=self.eval_every,
            checkpoint_activations=self.checkpoint_activations, fsdp=self.fsdp,
        )

    def save(self, out_dir: Path) -> None:
        temp = out_dir / f".{RUN_FILE}.tmp"
        temp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temp, out_dir / RUN_FILE)

    @classmethod
    def load(cls, out_dir: Path) -> RunOptions:
        file = Path(out_dir) / RUN_FILE
        if not file.is_file():
            raise TrilogyError(f"--resume {out_dir}: no {RUN_FILE} there, so it is not a trilogy training folder")
        return cls(**json.loads(file.read_text()))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def model_config(options: RunOptions, tokenizer: Tokenizer, objective: str, num_labels: int) -> ModelConfig:
    """The preset, sized to the tokenizer and sequence length, with the tokenizer's special ids and the head
    the objective trains."""
    special = special_tokens(tokenizer)
    changes = dict(
        vocab_size=tokenizer.get_vocab_size(), head=HEAD_FOR[objective],
        max_seq_len=max(options.seq_len, PRESETS[options.preset]["max_seq_len"]),
        pad_token_id=special.get("pad"), bos_token_id=special.get("bos"), eos_token_id=special.get("eos"),
    )
    if options.arch == "encoder-decoder":
        changes["decoder_start_token_id"] = special.get("decoder_start", special.get("pad"))
    if objective == "classification":
        changes["num_labels"] = num_labels
    for name in ("dropout", "d_model", "n_layers", "n_heads", "d_ff", "position"):
        if getattr(options, name) is not None:
            changes[name] = getattr(options, name)
    if options.d_model is not None and options.arch == "encoder-decoder" and options.n_heads is not None:
        changes["d_head"] = options.d_model // options.n_heads
    return ModelConfig.from_preset(options.preset, **changes)


def run_training(options: RunOptions, out_dir: Path, dist: Distributed, resume: bool = False) -> TrainResult:
    """Build the run ``options`` describe and train it; with ``resume`` continue the run in ``out_dir``."""
    out_dir = Path(out_dir)
    start = load_start(options) if options.init is not None else None
    if start is None:
        options.preset = options.preset or DEFAULT_PRESET[options.arch]
    corpus = load_corpus(options.data)
    options.objective = options.objective or OBJECTIVES[(options.arch, corpus.kind)]
    data = objective_corpus(options.objective, corpus, options.data)
    tokenizer_file = out_dir / "tokenizer.json"
    if not (resume and tokenizer_file.is_file()):
        if not resume and latest_checkpoint(out_dir) is not None:
            raise TrilogyError(f"{out_dir} already holds a training run; continue it with --resume {out_dir} "
                             "or choose another --out")
        if dist.is_main:  # one rank trains it: WordPiece and Unigram training can differ from run to run
            if options.tokenizer is not None:
                tokenizer = Tokenizer.from_file(options.tokenizer)
            elif start is not None:
                tokenizer = start.tokenizer
            else:
                tokenizer = train_tokenizer(options.arch, corpus.texts("train"), options.vocab_size)
            out_dir.mkdir(parents=True, exist_ok=True)
            temp = out_dir / ".tokenizer.json.tmp"
            tokenizer.save(str(temp))
            os.replace(temp, tokenizer_file)
            (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        dist.barrier()
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if dist.is_main:
        options.save(out_dir)

    labels = label_names(corpus) if options.objective == "classification" else None
    torch.manual_seed(options.seed)
    if start is None:
        model = build_model(model_config(options, tokenizer, options.objective, len(labels or ())))
    else:
        model = fine_tuned_model(start, options, tokenizer, len(labels or ()))
    model = model.to(dist.device)
    model.tokenizer = tokenizer
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

    return train(model, batches, loss_fn, options.settings(dist.device), out_dir, save_model_files, run_eval,
                 dist, resume=resume, run_info=asdict(options))


def objective_corpus(objective: str, corpus: Corpus, data: str) -> Corpus:
    """What ``objective`` trains on in ``corpus``: the corpus itself, or for a text objective on a pairs
    corpus its sources (pre-training on the code before fine-tuning on the pairs). The tokenizer is still
    trained on the whole corpus, targets included, so that the fine-tuning can keep it."""
    if objective in PAIRS and corpus.kind != "pairs":
        raise TrilogyError(f"objective {objective!r} needs source/target pairs (.jsonl); --data {data} holds text")
    return corpus.sources() if objective not in PAIRS and corpus.kind == "pairs" else corpus


def load_start(options: RunOptions):
    """The checkpoint ``--init`` names, with its tokenizer (required unless --tokenizer is given)."""
    from ..convert import from_pretrained

    start = from_pretrained(options.init)
    if start.arch != options.arch:
        raise TrilogyError(f"--init {options.init} holds a model of the {start.arch} family; "
                         f"--arch {options.arch} cannot start from it")
    if options.tokenizer is None and getattr(start, "tokenizer", None) is None:
        raise TrilogyError(f"--init {options.init} has no tokenizer.json; pass the one it was trained with "
                         "as --tokenizer")
    return start


def fine_tuned_model(start, options: RunOptions, tokenizer: Tokenizer, num_labels: int):
    """A model with ``start``'s architecture and weights and the head ``options.objective`` trains. A head the
    checkpoint lacks (e.g. a classifier on a masked-LM model) starts freshly initialised."""
    if tokenizer.get_vocab_size() != start.config.vocab_size:
        raise TrilogyError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but --init {options.init} was "
                         f"trained with {start.config.vocab_size}")
    if options.seq_len > start.config.max_seq_len and start.config.position in ("learned", "sinusoidal"):
        raise TrilogyError(f"--seq-len {options.seq_len} exceeds the {start.config.max_seq_len} positions of "
                         f"--init {options.init}")
    changes = {"head": HEAD_FOR[options.objective]}
    if options.objective == "classification":
        changes["num_labels"] = num_labels
    if options.dropout is not None:
        changes["dropout"] = options.dropout
    model = build_model(start.config.replace(**changes))
    same_head = model.config.head == start.config.head and model.config.num_labels == start.config.num_labels
    missing, unexpected = model.load_state_dict(start.state_dict(), strict=same_head)
    if missing or unexpected:
        print(f"--init {options.init}: {len(missing)} head tensors start fresh, {len(unexpected)} of the "
              "checkpoint's head are not used", file=sys.stderr)
    return model


def label_names(corpus) -> list[str]:
    """The classes of a classification corpus: its distinct training targets, sorted."""
    return sorted({target for _, target in corpus.train})
