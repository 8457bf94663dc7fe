"""Shared by the training tests: a small deterministic text corpus and the `trilogy train` command line."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORDS = ("the king and queen of england spoke to all the lords at court about war and peace while "
         "a fool sang of love lost and found under the moon by the river near the old castle walls").split()


def write_text(path: Path, chars: int = 40_000, seed: int = 0) -> Path:
    """Sentences of random words in paragraphs: enough for a tokenizer, a validation tail and many blocks."""
    rng = random.Random(seed)
    paragraphs, size = [], 0
    while size < chars:
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                     for _ in range(rng.randint(2, 5))]
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    path.write_text("\n\n".join(paragraphs) + "\n")
    return path


def train_args(out: Path, data: Path, arch: str = "decoder", **options) -> list[str]:
    """`trilogy train` arguments for a tiny, quick, single-threaded run (an option given as None is left out)."""
    settings = dict(arch=arch, data=str(data), max_steps=24, batch_size=4, seq_len=32, vocab_size=300,
                    save_every=4, eval_every=8, eval_batches=2, seed=3, d_model=32, d_ff=64, threads=1)
    settings.update(options)
    args = ["train"]
    for name, value in settings.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args + ["--out", str(out)]


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "trilogy", *args]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def train_records(folder: Path) -> list[dict]:
    lines = (Path(folder) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == "train"]
