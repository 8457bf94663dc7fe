"""Scaling switches of `trilogy train`: FSDP over 2 CPU ranks (gloo) computes what one process computes, resumes
from its sharded run and exports a normal checkpoint; activation checkpointing changes nothing but memory;
bf16 autocast ends a short run at the fp32 loss."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import torch

import trilogy
from trilogy.cli import main
from trilogy.train.state import checkpoint_dir

from .train_helpers import command, train_args, train_records, weights, write_text

STEPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "trilogy", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def losses(folder) -> list[float]:
    return [r["loss"] for r in train_records(folder)]


def test_fsdp_two_ranks_match_one_process_resume_and_export(tmp_path):
    data = write_text(tmp_path / "text.txt")
    options = dict(max_steps=STEPS, dropout=0.0, save_every=3, eval_every=0)
    one = tmp_path / "one"
    result = subprocess.run(command(train_args(one, data, "decoder", batch_size=8, **options)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    options["tokenizer"] = one / "tokenizer.json"
    sharded = tmp_path / "sharded"
    torchrun(train_args(sharded, data, "decoder", batch_size=4, **options) + ["--fsdp"])
    assert max(abs(a - b) for a, b in zip(losses(one), losses(sharded), strict=True)) < 1e-4
    assert len(set(losses(one))) == STEPS
    # the sharded run saved a normal checkpoint folder: it loads without any process group
    exported = trilogy.from_pretrained(sharded)
    reference = weights(one)
    for name, tensor in exported.state_dict().items():
        if name in reference:
            torch.testing.assert_close(tensor, reference[name], atol=1e-4, rtol=1e-4, msg=name)
    # resume the sharded run from its step-3 checkpoint: it ends where the uninterrupted run ended
    resumed = tmp_path / "resumed"
    shutil.copytree(sharded, resumed)
    shutil.rmtree(checkpoint_dir(resumed, STEPS))
    torchrun(["train", "--resume", str(resumed), "--threads", "1"])
    final, again = weights(sharded), weights(resumed)
    for name in final:
        torch.testing.assert_close(again[name], final[name], atol=1e-6, rtol=1e-6, msg=name)


def test_activation_checkpointing_switch_changes_no_loss(tmp_path):
    data = write_text(tmp_path / "text.txt", chars=20_000)
    options = dict(max_steps=4, dropout=0.0, save_every=0, eval_every=0)
    assert main(train_args(tmp_path / "plain", data, "encoder-decoder", **options)) == 0
    options["tokenizer"] = tmp_path / "plain" / "tokenizer.json"
    assert main(train_args(tmp_path / "ckpt", data, "encoder-decoder", **options) + ["--checkpoint-activations"]) == 0
    assert losses(tmp_path / "plain") == losses(tmp_path / "ckpt")


def test_bf16_ends_a_short_run_at_the_fp32_loss(tmp_path):
    data = write_text(tmp_path / "text.txt", chars=20_000)
    options = dict(max_steps=50, save_every=0, eval_every=0, d_model=64, d_ff=128)
    assert main(train_args(tmp_path / "fp32", data, "decoder", precision="fp32", **options)) == 0
    options["tokenizer"] = tmp_path / "fp32" / "tokenizer.json"
    assert main(train_args(tmp_path / "bf16", data, "decoder", precision="bf16", **options)) == 0
    fp32, bf16 = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert fp32[-1] < 0.8 * fp32[0]  # it learned something in 50 steps
    assert abs(fp32[-1] - bf16[-1]) < 0.01, (fp32[-1], bf16[-1])
