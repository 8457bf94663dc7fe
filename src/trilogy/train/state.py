"""Checkpoints a run can resume from, written so that a kill at any moment leaves a usable one.

Layout of an output folder::

    OUT/config.json, model.safetensors, tokenizer.json   the latest weights: ``trilogy.from_pretrained(OUT)``
    OUT/checkpoints/step-00000100/                       the same three files plus training_state.pt
    OUT/metrics.jsonl, OUT/loss.png

A checkpoint is written into a temporary folder and renamed into place, so ``checkpoints/`` only ever holds
complete ones; the top-level files are hard links to the newest checkpoint's (copies where the filesystem has no
hard links), each replaced by rename. The last ``keep_last`` checkpoints and the one with the best validation loss
are kept; older ones are deleted only once the new one is complete. A save that finds the disk full (ENOSPC,
EDQUOT) removes what it had begun and raises ``DiskFullError``, naming the checkpoint ``--resume`` continues from.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
from pathlib import Path

import torch
from torch import nn

from ..errors import DiskFullError

CHECKPOINTS = "checkpoints"
STATE_FILE = "training_state.pt"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
_STEP_DIR = re.compile(r"^step-(\d{8})$")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
    Raises:
        DiskFullError: no space was left (or the quota was reached); no temporary file is left behind and every
            complete checkpoint is kept.
    """
    out_dir = Path(out_dir)
    try:
        final = _write_checkpoint(checkpoint_dir(out_dir, step), save_model_files, training_state)
        publish(final, out_dir)
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise disk_full(error, f"saving step {step} in {out_dir}", out_dir) from error
    for old in checkpoint_steps(out_dir)[:-keep_last]:  # only now that the new checkpoint is complete
        if old != best_step:
            shutil.rmtree(checkpoint_dir(out_dir, old))
    return final


def _write_checkpoint(final: Path, save_model_files, training_state: dict) -> Path:
    """Write the checkpoint folder ``final`` through a temporary folder, removed if anything fails."""
    temp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir(parents=True)
        save_model_files(temp)
        save_training_state(training_state, temp / STATE_FILE)
        for file in temp.iterdir():
            with file.open("rb") as f:
                os.fsync(f.fileno())
        if final.exists():  # only when a resumed run re-saves the step it resumed from
            shutil.rmtree(final)
        os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_dir(final.parent)
    return final


def save_training_state(training_state: dict, file: Path) -> None:
    """``torch.save`` through a Python file, so that a failed write raises its own OSError: torch's writer turns
    it into a RuntimeError without the errno, and a full disk could not be told from a bug."""
    with file.open("wb") as f:
        writer = _KeepsWriteError(f)
        try:
            torch.save(training_state, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None


class _KeepsWriteError:
    """A binary file for ``torch.save`` that remembers the OSError its last failed write raised."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def publish(checkpoint: Path, out_dir: Path) -> None:
    """Put a checkpoint's model files at the top of ``out_dir``, each replaced by a rename: hard links to the
    checkpoint's files, so the weights are not stored twice, or copies where the filesystem has no hard links."""
    for name in MODEL_FILES:
        source, target = checkpoint / name, Path(out_dir) / name
        if not source.is_file():  # a model without a tokenizer
            continue
        if target.exists() and os.path.samefile(source, target):  # published already: a rename would keep the temp
            continue
        temp = Path(out_dir) / f".{name}.tmp"
        temp.unlink(missing_ok=True)  # left by a kill
        try:
            try:
                os.link(source, temp)
            except OSError:  # no hard links here (FAT, some network filesystems), or another device
                shutil.copyfile(source, temp)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write that found no space left (ENOSPC) or the disk quota reached (EDQUOT)."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


def disk_full(error: OSError, doing: str, out_dir: Path, resumable: bool = True) -> DiskFullError:
    """The one-line error for a disk that filled up while ``doing``: where, and what ``--resume`` continues from
    (or, for a run that is not ``resumable`` because its options could not be recorded, to run it again)."""
    steps = checkpoint_steps(out_dir)
    if not resumable:
        then = "run the command again"
    elif steps:
        then = f"--resume {out_dir} continues from step {steps[-1]} ({checkpoint_dir(out_dir, steps[-1])})"
    else:
        then = f"--resume {out_dir} starts again from step 0 (no checkpoint is complete yet)"
    return DiskFullError(f"the disk is full ({os.strerror(error.errno)}) {doing}; free some space, then {then}")


def load_training_state(folder: Path) -> dict:
    """The ``training_state.pt`` of a checkpoint folder (tensors, numbers, strings, lists, dicts only)."""
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def load_weights(model: nn.Module, folder: Path) -> None:
    """Copy the weights saved in checkpoint ``folder`` into ``model`` in place, bit for bit."""
    from ..convert import from_pretrained

    model.load_state_dict(from_pretrained(folder).state_dict(), strict=True)
