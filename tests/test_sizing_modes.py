"""The size calculator's training modes against measurement, with ``test_sizing.py``'s method (the allocator's
high-water mark of a real AdamW step, plus the weights): activation checkpointing on and off, bf16 autocast, the
fused loss where the vocabulary dominates, and FSDP over 2 CPU ranks (gloo), whose per-rank shards and peak are
measured in each rank. Within 20%, like the rest."""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trilogy.config import ModelConfig
from trilogy.models import build_model
from trilogy.sizing import count_parameters, memory_breakdown
from trilogy.train import fsdp

from .test_scale import free_port
from .test_sizing import check_training, inputs, measured_peak, run, training_labels, trilogy

SHAPE = dict(batch=2, seq=128, src=64)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-t5"])
def test_checkpointing_matches_measured_peak(name, checkpointing, dropout):
    """With dropout on, each checkpointed layer also keeps its boolean dropout masks."""
    config = ModelConfig.from_preset(name, dropout=dropout)
    memory = check_training(config, **SHAPE, checkpointing=checkpointing)
    assert (memory["recompute"] > 0) == checkpointing


def test_checkpointing_keeps_only_layer_inputs():
    config = ModelConfig.from_preset("gpt2", dropout=0.0)
    plain = memory_breakdown(config, 8, 1024)
    checkpointed = memory_breakdown(config, 8, 1024, checkpointing=True)
    assert checkpointed["activations"] + checkpointed["recompute"] < plain["activations"] / 3
    assert checkpointed["total"] < plain["total"]


@pytest.mark.parametrize("name,checkpointing", [("tiny-gpt2", False), ("tiny-t5", False), ("tiny-gpt2", True),
                                                ("tiny-llama", False)])
def test_bf16_autocast_matches_measured_peak(name, checkpointing):
    config = ModelConfig.from_preset(name, dropout=0.0)
    memory = check_training(config, **SHAPE, precision="bf16-autocast", checkpointing=checkpointing)
    assert memory["weights"] == 4 * count_parameters(config) and memory["autocast_weights"] > 0


@pytest.mark.parametrize("name,batch", [("tiny-gpt2", 4), ("tiny-gpt2", 12), ("tiny-bert", 12)])
def test_fused_loss_with_a_large_vocabulary_matches_measured_peak(name, batch):
    # 512 rows: one chunk; 1,536 rows: two, and the first one's logits are still alive when the second's start;
    # MLM: only the 15% masked rows reach the head
    config = ModelConfig.from_preset(name, dropout=0.0, vocab_size=8192)
    memory = check_training(config, batch, 128, None)
    assert memory["loss_chunk"] > memory["activations"] / 4  # the logits matter here


# --- FSDP: 2 ranks -----------------------------------------------------------------------------------------

def _fsdp_rank(rank: int, port: int, name: str, folder: str) -> None:
    """One rank: shard the model as ``trilogy train --fsdp`` does, measure a training step's peak, then the
    bytes this rank holds of the parameters, gradients and AdamW state."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    config = ModelConfig.from_preset(name, dropout=0.0)
    torch.manual_seed(0)
    model = fsdp.shard(build_model(config).train())
    optimizer = torch.optim.AdamW(model.parameters())
    ids, source = inputs(config, SHAPE["batch"], SHAPE["seq"], SHAPE["src"])  # this rank's half of the batch
    labels = training_labels(config, ids)

    def step():
        run(model, ids, source, False, labels).loss.backward()
        optimizer.step()

    def local_bytes(tensors) -> int:
        return sum(t.to_local().numel() * t.element_size() for t in tensors)

    weights = local_bytes(model.parameters())
    peak = measured_peak(step) + weights
    moments = [value for state in optimizer.state.values() for key, value in state.items() if key != "step"]
    sharded = weights + local_bytes(p.grad for p in model.parameters()) + local_bytes(moments)
    with open(f"{folder}/rank{rank}.json", "w") as f:
        json.dump(dict(peak=peak, sharded=sharded), f)
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-t5"])
def test_fsdp_per_rank_memory_matches_two_ranks(name, tmp_path):
    # forked, not spawned: the ranks start without importing torch again (one thread each, so no OpenMP pool
    # is touched after the fork)
    ranks = mp.start_processes(_fsdp_rank, args=(free_port(), name, str(tmp_path)), nprocs=2, join=False,
                               start_method="fork")
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.terminate()
            pytest.fail("the FSDP ranks did not finish in 120 s")
    config = ModelConfig.from_preset(name, dropout=0.0)
    src = SHAPE["src"] if config.arch == "encoder-decoder" else None
    memory = memory_breakdown(config, 2 * SHAPE["batch"], SHAPE["seq"], src, fsdp_shards=2)
    whole = memory_breakdown(config, 2 * SHAPE["batch"], SHAPE["seq"], src)
    sharded = memory["weights"] + memory["gradients"] + memory["optimizer"]
    assert sharded == pytest.approx((whole["weights"] + whole["gradients"] + whole["optimizer"]) / 2, rel=0.01)
    for rank in range(2):
        measured = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert sharded == pytest.approx(measured["sharded"], rel=0.20), (sharded, measured["sharded"])
        assert memory["total"] == pytest.approx(measured["peak"], rel=0.20), (memory["total"], measured["peak"])


# --- the command -------------------------------------------------------------------------------------------

def test_size_command_shows_the_modes(capsys):
    code, out, err = trilogy(capsys, "size", "tiny-t5", "--batch", "4", "--seq", "32", "--checkpoint-activations",
                             "--precision", "bf16-autocast", "--fsdp-shards", "2", "--json")
    assert code == 0, err
    work = json.loads(out)["workload"]
    assert work["precision"] == "bf16-autocast" and work["checkpointing"] and work["fsdp_shards"] == 2
    assert work["batch_per_rank"] == 2 and work["labelled_rows"] == 64
    code, out, err = trilogy(capsys, "size", "tiny-bert", "--seq", "32", "--checkpoint-activations",
                             "--precision", "bf16-autocast", "--fsdp-shards", "1")
    assert code == 0, err
    header = out.splitlines()[0]
    assert "bf16 autocast (fp32 weights)" in header and "activation checkpointing" in header
    assert "fused loss over 5 labelled rows" in header
    code, out, err = trilogy(capsys, "size", "tiny-gpt2", "--dtype", "bf16", "--inference")
    assert code == 0 and "bf16 weights, inference" in out.splitlines()[0]


@pytest.mark.parametrize("args,message", [
    (["--inference", "--checkpoint-activations"], "--checkpoint-activations applies to a training step"),
    (["--inference", "--fsdp-shards", "2"], "--fsdp-shards applies to a training step"),
    (["--inference", "--precision", "bf16-autocast"], "--precision bf16-autocast applies to a training step"),
    (["--batch", "3", "--fsdp-shards", "2"], "--batch 3 does not split evenly over --fsdp-shards 2"),
    (["--fsdp-shards", "0"], "--fsdp-shards must be a positive integer"),
])
def test_size_command_rejects_bad_mode_combinations(args, message, capsys):
    code, out, err = trilogy(capsys, "size", "tiny-gpt2", *args)
    assert code == 2 and err.startswith(f"trilogy size: error: {message}") and len(err.splitlines()) == 1, err
