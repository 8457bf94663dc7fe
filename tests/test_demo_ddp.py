"""``trilogy demo`` under torchrun: 2 CPU ranks (gloo), each with half of the size's batch, compute the matrix one
process computes: the same budget, and in every unit the same steps, tokens and FLOPs (integer counts summed
over the ranks: exactly), the same losses and scores up to the order of the float sums; one rank reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import trilogy

pytestmark = pytest.mark.slow  # two tiny demos: about a minute on 2 CPU cores

# three kinds of fine-tuning: a classification head, text-to-text (plurals) and a language model, whose score
# (nats per character) is continuous; 13 to 19 pre-training steps per architecture, 2 to 4 per task
DEMO = ["demo", "--tasks", "polarity", "plurals", "lm", "--max-train", "24", "--max-eval", "6",
        "--pretrain-flops", "1e10", "--finetune-steps", "3"]
#: DDP sums the ranks' gradients in another order than one process's backward: the losses of a short run
#: agree within about 1e-5 (tests/test_train_ddp.py asks 1e-4 of `trilogy train`), and so do continuous
#: scores; a discrete one (accuracy, exact match of 6 rows) moves by 1/6, so this asks it to be equal
TOLERANCE = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo(out: Path, processes: int) -> str:
    """Run the tiny demo in ``out`` as one process or under torchrun; returns its standard output."""
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--nnodes", "1",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())] if processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(trilogy.__file__).parents[1])}
    result = subprocess.run([sys.executable, *launcher, "-m", "trilogy", *DEMO, "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def train_losses(folder: Path) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


def test_two_ranks_compute_the_matrix_of_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    demo(one, 1)
    stdout = demo(two, 2)
    assert stdout.count("writing the report") == 1 and stdout.count("evaluating the fine-tuned") == 1

    single, ranks = (json.loads((out / "report.json").read_text()) for out in (one, two))
    for key in ("pretrain_flops", "task_flops"):
        assert ranks["budgets"][0][key] == single["budgets"][0][key]
    for row, same in zip(single["pretraining"], ranks["pretraining"], strict=True):
        assert [same[key] for key in ("steps", "tokens", "flops")] == [row[key] for key in ("steps", "tokens", "flops")]
        assert row["steps"] > 1
        assert train_losses(two / "pretrain" / row["arch"]) == pytest.approx(
            train_losses(one / "pretrain" / row["arch"]), abs=TOLERANCE)
    for task, same in zip(single["tasks"], ranks["tasks"], strict=True):
        for arch, cell in task["results"].items():
            other = same["results"][arch]
            assert (other["flops"], other["reason"]) == (cell["flops"], cell["reason"]), (task["name"], arch)
            if cell["score"] is None:
                assert other["score"] is None
                continue
            assert other["score"] == pytest.approx(cell["score"], abs=TOLERANCE), (task["name"], arch)
            unit = Path("finetune", task["name"], arch)
            assert train_losses(two / unit) == pytest.approx(train_losses(one / unit), abs=TOLERANCE)
