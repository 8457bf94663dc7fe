"""Data parallelism and accumulation: 2 processes under torchrun (gloo, CPU) with per-rank batch b compute the
same per-step losses as 1 process with batch 2b, and so does 1 process with batch b accumulating 2 steps."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from .train_helpers import command, train_args, train_records, weights, write_text

STEPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], processes: int = 1) -> None:
    if processes == 1:
        cmd = command(args)
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "trilogy", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def losses(folder) -> list[float]:
    records = train_records(folder)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    return [r["loss"] for r in records]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_text(tmp_path_factory.mktemp("data") / "text.txt")


@pytest.mark.parametrize("arch", ["decoder", pytest.param("encoder", marks=pytest.mark.slow)])
def test_two_processes_match_one_process_with_the_double_batch(tmp_path, data, arch):
    options = dict(max_steps=STEPS, dropout=0.0, save_every=0, eval_every=0)
    run(train_args(tmp_path / "one", data, arch, batch_size=8, **options))
    run(train_args(tmp_path / "two", data, arch, batch_size=4, **options), processes=2)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < 1e-4, (one, two)
    assert len(set(one)) == STEPS  # the losses move: the runs really trained
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=1e-4, rtol=1e-4, msg=name)


def test_gradient_accumulation_matches_the_full_batch(tmp_path, data):
    options = dict(max_steps=STEPS, dropout=0.0, save_every=0, eval_every=0)
    run(train_args(tmp_path / "full", data, "encoder-decoder", batch_size=8, **options))
    options["tokenizer"] = tmp_path / "full" / "tokenizer.json"  # Unigram training is not reproducible
    run(train_args(tmp_path / "accumulated", data, "encoder-decoder", batch_size=4, grad_accum=2, **options))
    full, accumulated = losses(tmp_path / "full"), losses(tmp_path / "accumulated")
    assert max(abs(a - b) for a, b in zip(full, accumulated, strict=True)) < 1e-4, (full, accumulated)
