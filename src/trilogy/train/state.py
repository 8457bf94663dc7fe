"""Checkpoints a run can resume from, written so that a kill at any moment leaves a usable one.

Layout of an output folder::

    OUT/config.json, model.safetensors, tokenizer.json   the latest weights: ``trilogy.from_pretrained(OUT)``
    OUT/checkpoints/step-00000100/                       the same three files plus training_state.pt
    OUT/metrics.jsonl, OUT/loss.png

A checkpoint is written into a temporary folder and renamed into place, so ``checkpoints/`` only ever holds
complete ones; the top-level files are each replaced by rename. The last ``keep_last`` checkpoints and the one
with the best validation loss are kept.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import torch
from torch import nn

CHECKPOINTS = "checkpoints"
STATE_FILE = "training_state.pt"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def rng_state() -> dict:
    """Every random-number generator the loop draws from: torch CPU (dropout), CUDA, Python's ``random``."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step-{step:08d}"


def checkpoint_steps(out_dir: Path) -> list[int]:
    """Steps of the complete checkpoints under ``out_dir``, ascending."""
    folder = Path(out_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name)))


def latest_checkpoint(out_dir: Path) -> Path | None:
    steps = checkpoint_steps(out_dir)
    return checkpoint_dir(out_dir, steps[-1]) if steps else None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(out_dir: Path, step: int, save_model_files, training_state: dict, keep_last: int,
                    best_step: int | None) -> Path:
    """Write checkpoint ``step`` atomically, publish its model files at the top of ``out_dir``, prune.

    Args:
        save_model_files: ``f(folder)`` writing config.json, model.safetensors and tokenizer.json there.
        training_state: optimizer, RNG states, data position, counters; saved with ``torch.save``.
        keep_last: how many of the newest checkpoints to keep; ``best_step``'s is kept as well.
    """
    out_dir = Path(out_dir)
    final = checkpoint_dir(out_dir, step)
    temp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    save_model_files(temp)
    torch.save(training_state, temp / STATE_FILE)
    for file in temp.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())
    if final.exists():  # only when a resumed run re-saves the step it resumed from
        shutil.rmtree(final)
    os.replace(temp, final)
    _fsync_dir(final.parent)
    publish(final, out_dir)
    for old in checkpoint_steps(out_dir)[:-keep_last]:
        if old != best_step:
            shutil.rmtree(checkpoint_dir(out_dir, old))
    return final


def publish(checkpoint: Path, out_dir: Path) -> None:
    """Copy a checkpoint's model files to the top of ``out_dir``, each replaced by a rename."""
    for name in MODEL_FILES:
        if not (checkpoint / name).is_file():  # a model without a tokenizer
            continue
        top_temp = Path(out_dir) / f".{name}.tmp"
        shutil.copyfile(checkpoint / name, top_temp)
        os.replace(top_temp, Path(out_dir) / name)


def load_training_state(folder: Path) -> dict:
    """The ``training_state.pt`` of a checkpoint folder (tensors, numbers, strings, lists, dicts only)."""
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def load_weights(model: nn.Module, folder: Path) -> None:
    """Copy the weights saved in checkpoint ``folder`` into ``model`` in place, bit for bit."""
    from ..convert import from_pretrained

    model.load_state_dict(from_pretrained(folder).state_dict(), strict=True)
