"""Activation checkpointing: what it saves and what it costs, on one training step of trilogy's GPT-2.

GPT-2-shaped model (d_model 256, 4 layers, 4 heads, vocab 8192; random weights made by transformers and loaded
with ``trilogy.from_pretrained``), batch 8, sequence 1024, fp32: forward + backward with and without
``checkpoint_activations=True``, the two alternating step by step, medians. Two figures each:

- activation memory: the bytes kept for backward at the end of the forward pass (every tensor autograd saves,
  seen through ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded, and every dropout mask; each
  storage counted once). With checkpointing that is each layer's input and dropout masks plus the loss's saved
  gradients; a layer's own set exists again only while backward rebuilds it;
- step time (forward + backward), and the losses (identical: checkpointing replays the same dropout).

    python benchmarks/checkpointing.py                 # dropout 0.1 (GPT-2's) and 0
    python benchmarks/checkpointing.py --dropout 0 --rounds 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode

import trilogy
from trilogy.blocks.dropout import is_mask_draw

transformers.logging.set_verbosity_error()
SHAPE = dict(d_model=256, n_layers=4, n_heads=4, vocab=8192, batch=8)


def build(seq: int, dropout: float, checkpoint_activations: bool) -> trilogy.TransformerModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=SHAPE["d_model"], n_layer=SHAPE["n_layers"], n_head=SHAPE["n_heads"],
                                     vocab_size=SHAPE["vocab"], n_positions=seq, resid_pdrop=dropout,
                                     embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0)
    with tempfile.TemporaryDirectory() as folder:
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
        return trilogy.from_pretrained(folder, checkpoint_activations=checkpoint_activations).train()


class DropoutMasks(TorchDispatchMode):
    """Records the boolean dropout masks drawn (``blocks/dropout.py``): checkpointing stores them outside
    autograd's saved tensors, so the hooks below would not see them."""

    def __init__(self, storages: dict):
        super().__init__()
        self.storages = storages

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if is_mask_draw(func, args):
            self.storages[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
        return out


def saved_bytes(model, ids, labels) -> int:
    """Bytes kept for backward after one forward pass (parameters excluded): autograd's saved tensors and the
    dropout masks."""
    storages = {}

    def pack(tensor):
        if not isinstance(tensor, torch.nn.Parameter):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), DropoutMasks(storages):
        loss = model.run(ids, labels=labels).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def step(model, ids, labels) -> tuple[float, float]:
    torch.manual_seed(1)  # the same dropout masks in every step
    start = time.perf_counter()
    loss = model.run(ids, labels=labels).loss
    loss.backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds, loss.item()


def measure(seq: int, dropout: float, rounds: int) -> dict:
    modes = {"plain": False, "checkpointing": True}
    models = {name: build(seq, dropout, enabled) for name, enabled in modes.items()}  # the same weights
    ids = torch.randint(0, SHAPE["vocab"], (SHAPE["batch"], seq), generator=torch.Generator().manual_seed(0))
    labels = torch.cat([ids[:, 1:], torch.full((SHAPE["batch"], 1), -100)], dim=1)
    result = {"seq": seq, "dropout": dropout, "saved_bytes": {}, "loss": {}, "seconds": {m: [] for m in modes}}
    for name, model in models.items():
        result["saved_bytes"][name] = saved_bytes(model, ids, labels)
        result["loss"][name] = step(model, ids, labels)[1]  # also the warm-up
    for i in range(rounds):
        for name in (list(modes) if i % 2 == 0 else list(modes)[::-1]):
            result["seconds"][name].append(step(models[name], ids, labels)[0])
    result["median_s"] = {name: statistics.median(times) for name, times in result["seconds"].items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.1, 0.0])
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per mode (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [measure(args.seq, dropout, args.rounds) for dropout in args.dropout]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"GPT-2 shape {SHAPE}, seq {args.seq}, fp32, {torch.get_num_threads()} threads; forward + backward, "
          f"medians of {args.rounds} interleaved steps")
    print(f"{'dropout':>7} {'mode':14} {'kept for backward MiB':>22} {'step s':>7} {'loss':>8}")
    for r in results:
        for name in ("plain", "checkpointing"):
            print(f"{r['dropout']:7.2f} {name:14} {r['saved_bytes'][name] / 2**20:22.0f} {r['median_s'][name]:7.2f} "
                  f"{r['loss'][name]:8.4f}")
        memory = r["saved_bytes"]["plain"] / r["saved_bytes"]["checkpointing"]
        time_cost = r["median_s"]["checkpointing"] / r["median_s"]["plain"] - 1
        print(f"{'':7} checkpointing: {memory:.1f}x less activation memory for {time_cost:+.0%} step time "
              f"(target >= 2x for <= +35%: {'met' if memory >= 2 and time_cost <= 0.35 else 'NOT met'})")


if __name__ == "__main__":
    main()
