"""``benchmarks/gpu.py``, the prepared GPU check, on CPU: the FLOPs it counts against the matmuls' arithmetic, the
peak table and MFU, the deadline that stops a subprocess part, its dry mode (train and decode in-process; every
part end to end in a subprocess, slow), and the one-line refusal without CUDA."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import trilogy

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu = load_script()


def test_a_training_steps_flops_are_its_matmuls_and_attention():
    """Each Linear does 2 FLOPs per weight per token forward and twice that backward; the head only at
    labelled positions (the fused loss skips the rest); attention's two products 2 * T * T * d each per layer
    and row, the full square, times 3 with backward. Counted on CPU's math attention path, which the counter
    sees (torch's fused CPU kernel has no FLOP formula)."""
    torch.manual_seed(0)
    model = trilogy.build("tiny-gpt2", dropout=0.0)
    optimizer = gpu.build_optimizer(model.train(), lr=1e-3)
    batch, seq = 2, 32
    ids, labels = gpu.random_batch(model.config.vocab_size, batch, seq, "cpu")
    with sdpa_kernel(SDPBackend.MATH):
        flops = gpu.counted_flops(lambda: gpu.training_step(model, optimizer, ids, labels))
    head = model.lm_head.proj
    body = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m is not head)
    config = model.config
    labelled = int((labels != -100).sum())
    attention = 2 * 2 * batch * seq * seq * config.n_heads * config.d_head * config.n_layers
    assert flops == 3 * (2 * batch * seq * body + 2 * labelled * head.weight.numel() + attention)


def test_peak_by_device_name_and_mfu():
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4  # the SXM5 part, as torch names it
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.5
    assert gpu.peak_tflops("NVIDIA H200") == 989.4
    assert {gpu.peak_tflops(name) for name in ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB",
                                                "NVIDIA A100 80GB PCIe")} == {312.0}
    for other in ("NVIDIA H100 NVL", "NVIDIA GeForce RTX 4090", "cpu"):  # not in the table: MFU unknown
        assert gpu.peak_tflops(other) is None
    assert gpu.mfu(3e12, 0.02, 300.0) == pytest.approx(0.5)  # 150 TFLOP/s of 300
    assert gpu.mfu(3e12, 0.02, None) is None


def test_a_subprocess_part_is_interrupted_at_its_deadline_and_its_output_kept():
    code = "import time; print('{\"partial\": 1}', flush=True); time.sleep(60)"
    returncode, stdout, stopped = gpu.run_until([sys.executable, "-c", code], 2.0, gpu.Clock())
    assert stopped and returncode != 0
    assert json.loads(stdout) == {"partial": 1}


def check_train(train: dict, peak: float) -> None:
    assert train["ok"] and train["timed_steps"] >= 2
    for key in ("step_s", "tokens_per_s", "flops_per_step", "tflops", "loss_after_warmup"):
        assert isinstance(train[key], float | int) and train[key] > 0, key
    assert train["peak_tflops"] == peak and train["peak_source"] == "--peak-tflops"
    assert train["mfu"] == pytest.approx(train["flops_per_step"] / train["step_s"] / (peak * 1e12))


def check_decode(decode: dict) -> None:
    assert decode["ok"] and [b["batch"] for b in decode["batches"]] == list(gpu.DRY.decode_batches)
    for b in decode["batches"]:
        contenders = set(b["ms_per_token"])
        assert contenders == {"trilogy", "transformers", "transformers static+compiled"}
        assert b["same_tokens_as_transformers"]["trilogy"] is True
        assert b["repeats"] == gpu.DRY.repeats
        for values in (b["ms_per_token"], b["tokens_per_s"], b["vs_trilogy"]):
            assert set(values) == contenders and all(v > 0 for v in values.values())
        assert b["vs_trilogy"]["trilogy"] == 1.0


def test_dry_train_and_decode(capsys):
    code = gpu.main(["--dry", "--json", "--parts", "train", "decode", "--peak-tflops", "0.5"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["dry"] and report["device"] == "cpu"
    assert list(report["parts"]) == ["train", "decode"]
    check_train(report["parts"]["train"], 0.5)
    check_decode(report["parts"]["decode"])


@pytest.mark.slow
def test_dry_runs_every_part_end_to_end():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "benchmarks/gpu.py", "--dry", "--json", "--peak-tflops", "0.5"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    parts = report["parts"]
    assert list(parts) == ["tests", "train", "decode", "demo"]
    assert all(part["ok"] and part["seconds"] > 0 for part in parts.values())
    tests = parts["tests"]
    assert tests["passed"] + tests["skipped"] > 0 and tests["failed"] == tests["errors"] == 0  # skipped on CPU
    check_train(parts["train"], 0.5)
    check_decode(parts["decode"])
    demo = parts["demo"]
    assert demo["returncode"] == 0 and demo["wall_s"] > 0 and not demo["interrupted"]
    assert list(demo["matrix"]) == ["polarity"]
    assert all(isinstance(score, float) for score in demo["matrix"]["polarity"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line(capsys):
    assert gpu.main([]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "needs a CUDA device" in error
