"""Exact resume: a `trilogy train` process killed with SIGKILL at a random moment and resumed with --resume
ends with bitwise the same weights (and the same per-step losses) as a run that was never interrupted."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
import torch

from trilogy.data import train_tokenizer
from trilogy.train.metrics import MetricsLog
from trilogy.train.state import checkpoint_steps

from .train_helpers import command, train_args, train_records, weights, write_text


def run_to_end(args: list[str]) -> None:
    result = subprocess.run(command(args), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def kill_during_training(args: list[str], out, rng: random.Random, max_steps: int) -> str:
    """Start the run (or its resumption), SIGKILL it once it has logged a random step past its last
    checkpoint, plus a random fraction of a second (so the kill may land in a forward pass, an optimizer step,
    a checkpoint write or the publication of the final weights). Returns what happened, for the message."""
    saved = checkpoint_steps(out)
    resumed_from = saved[-1] if saved else 0
    target = rng.randint(min(resumed_from + 1, max_steps), max_steps)  # an earlier kill may have come after the end
    extra = rng.uniform(0.0, 0.25)
    if (out / "metrics.jsonl").exists():
        MetricsLog(out / "metrics.jsonl").truncate_after(resumed_from)  # as the resumed run will: count anew
    process = subprocess.Popen(command(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        logged = metrics.read_text().count('"split": "train"') if metrics.exists() else 0
        if logged >= target:
            time.sleep(extra)
            break
        time.sleep(0.005)
    finished = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return f"killed after step >= {target} + {extra:.3f}s ({'had already finished' if finished else 'mid-run'})"


def check_resume(tmp_path, arch: str, kills: int, seed: int, **options) -> None:
    data = write_text(tmp_path / "text.txt")
    # one tokenizer for both runs, trained once
    tokenizer = tmp_path / "tokenizer.json"
    train_tokenizer(arch, [data.read_text()], 300).save(str(tokenizer))
    options = {"tokenizer": str(tokenizer), **options}
    steps = options.get("max_steps", 24)
    run_to_end(train_args(tmp_path / "reference", data, arch, **options))
    out = tmp_path / "interrupted"
    rng = random.Random(seed)
    history = []
    for i in range(kills):
        args = train_args(out, data, arch, **options) if i == 0 else ["train", "--resume", str(out), "--threads", "1"]
        history.append(kill_during_training(args, out, rng, steps))
    run_to_end(["train", "--resume", str(out), "--threads", "1"])
    reference, resumed = weights(tmp_path / "reference"), weights(out)
    assert reference.keys() == resumed.keys()
    differing = [name for name in reference if not torch.equal(reference[name], resumed[name])]
    assert not differing, f"{history}: weights differ in {differing[:5]}"
    expected = [(r["step"], r["loss"]) for r in train_records(tmp_path / "reference")]
    assert [(r["step"], r["loss"]) for r in train_records(out)] == expected, history


def test_sigkill_at_a_random_moment_then_resume_gives_bitwise_identical_weights(tmp_path):
    check_resume(tmp_path, "decoder", kills=1, seed=random.randrange(1 << 30))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["encoder", "decoder", "encoder-decoder"])
def test_repeated_sigkills_every_family(tmp_path, arch):
    check_resume(tmp_path, arch, kills=3, seed=random.randrange(1 << 30), max_steps=30, save_every=3)
