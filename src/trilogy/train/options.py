"""The options of a training run: what ``trilogy train`` accepts (each field is one ``--option``, see
``trilogy.option_fields``) and what ``run.json`` stores so that ``--resume DIR`` rebuilds the same run."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..config import POSITIONS, PRESETS, TINY_PRESETS
from ..errors import TrilogyError
from ..objectives import OBJECTIVES, default_objective
from ..option_fields import option
from .precision import PRECISIONS

RUN_FILE = "run.json"
DEFAULT_PRESET = TINY_PRESETS
# what --init decides instead
ARCHITECTURE_OPTIONS = ("preset", "d_model", "n_layers", "n_heads", "d_ff", "position")


@dataclass
class RunOptions:
    """Everything that decides what a run computes. Saved as run.json; ``--resume`` reads it back."""

    arch: str = option(doc=f"model family: {', '.join(DEFAULT_PRESET)}")
    data: str = option("shakespeare", "a .txt file, a folder of text files, a .jsonl file (text or source/target), "
                                      "'shakespeare' or 'stdlib-docstrings'")
    preset: str | None = option(None, "model preset (default: tiny-bert / tiny-gpt2 / tiny-t5 for the family); "
                                      "see `trilogy presets`")
    objective: str | None = option(None, f"{', '.join(OBJECTIVES)} (default: from the family and the data); a "
                                         "text objective on pairs trains on their sources")
    max_steps: int = option(1000, "optimizer steps")
    batch_size: int = option(16, "sequences per process per micro-batch")
    seq_len: int = option(128, "tokens per sequence")
    vocab_size: int = option(2048, "tokenizer vocabulary, trained on the training split")
    tokenizer: str | None = option(None, "use this tokenizer.json (of the family's kind) instead of training one "
                                         "on the data")
    init: str | None = option(None, "fine-tune: start from this checkpoint's weights, architecture and tokenizer "
                                    "(a trilogy run, a Hugging Face model folder, or a model name in the Hugging "
                                    "Face cache)")
    seed: int = option(0, "seed of the weights, batches and dropout")
    lr: float = option(1e-3, "peak learning rate")
    warmup_steps: int | None = option(None, "linear warmup steps (default max_steps/10, at most 100)")
    min_lr_ratio: float = option(0.1, "cosine decays to this fraction of the peak")
    weight_decay: float = option(0.1, "AdamW weight decay of the weight matrices")
    clip_norm: float = option(1.0, "gradient clipping norm")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    precision: str = option("auto", "fp32, bf16 (autocast) or auto: bf16 on a GPU that supports it, else fp32 "
                                    "(bf16 pays off on CPUs with AVX512-BF16 or AMX for wide models only)")
    dropout: float | None = option(None, "dropout (default: the preset's)")
    d_model: int | None = option(None, "override the preset's width")
    n_layers: int | None = option(None, "override the preset's number of layers")
    n_heads: int | None = option(None, "override the preset's number of heads")
    d_ff: int | None = option(None, "override the preset's MLP width")
    position: str | None = option(None, "override the preset's positions: learned, sinusoidal, rope or none "
                                        "(relative: T5)")
    save_every: int = option(0, "checkpoint every K steps (0: at the end only)")
    keep_last: int = option(2, "checkpoints to keep besides the best")
    eval_every: int = option(0, "evaluate on the validation split every M steps (0: at the end only)")
    eval_batches: int = option(50, "at most this many validation batches per evaluation")
    checkpoint_activations: bool = option(False, "recompute each layer's activations in backward instead of "
                                                 "storing them (activation memory down several-fold for about "
                                                 "one more forward pass)")
    fsdp: bool = option(False, "under torchrun: shard parameters, gradients and optimizer state over the "
                               "processes (FSDP2); checkpoints are saved whole")

    def __post_init__(self) -> None:
        if self.arch not in DEFAULT_PRESET:
            raise TrilogyError(f"--arch must be one of {', '.join(DEFAULT_PRESET)}, got {self.arch!r}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise TrilogyError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective is not None and OBJECTIVES[self.objective].corpus_kind == "task":
            raise TrilogyError(f"objective {self.objective!r} fine-tunes on a task's rows (trilogy demo), not on "
                               "--data")
        if self.objective is not None and OBJECTIVES[self.objective].arch != self.arch:
            raise TrilogyError(f"objective {self.objective!r} trains {OBJECTIVES[self.objective].arch} models, "
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

    def resolved(self, corpus_kind: str, fine_tuning: bool) -> RunOptions:
        """These options with the defaults that depend on the run filled in: the family's preset (unless
        fine-tuning, where ``--init`` gives the architecture) and the objective for a corpus of this kind."""
        preset = self.preset if fine_tuning else self.preset or DEFAULT_PRESET[self.arch]
        return replace(self, preset=preset, objective=self.objective or default_objective(self.arch, corpus_kind))

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
