"""Peak memory of one training step: trilogy vs Hugging Face transformers on identical weights.

GPT-2-shaped model (d_model 256, 4 layers, 4 heads, vocab 8192), batch 8, fp32, one step of forward + backward +
AdamW at sequence 256, 1024 and 4096. Each contender runs in its own fresh process that imports the same modules
(torch and transformers) and loads the same checkpoint folder, so their baselines match; the figure is the
process's peak resident set size (ru_maxrss) after the step, and the step's own growth over the RSS just before it.

    python benchmarks/memory.py                    # all sequences, all contenders
    python benchmarks/memory.py --seq 1024 --json

Contenders: transformers; trilogy; trilogy with activation checkpointing; trilogy with bf16 autocast.

Beside each trilogy contender the table prints what ``trilogy size`` predicts for the same workload
(``trilogy.sizing.memory_breakdown``: same config, batch and sequence, the contender's precision and
checkpointing; attention ``"sdpa"``, which the sizing turns into trilogy's explicit path when attention dropout
is on, as the model does).
The estimate counts tensor bytes at the step's peak, weights included. RSS also holds the interpreter, torch and
the checkpoint's loading, which the estimate leaves out, so the estimate is compared with the step's RSS growth
plus the weights (resident before the step, and counted by the estimate):

- ``est/RSS``: against that figure from the measured process itself. glibc keeps many freed blocks in its heap
  (its mmap threshold grows after the first large frees), so this RSS also counts memory no tensor holds.
- ``est/RSS*``: against the same step in a second fresh process run with ``MALLOC_MMAP_THRESHOLD_=65536``, which
  makes glibc map every block over 64 KiB on its own and unmap it when freed: its RSS follows the live tensor
  bytes, what the estimate models.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(d_model=256, n_layers=4, n_heads=4, vocab=8192, batch=8)
CONTENDERS = ["transformers", "trilogy", "trilogy+checkpointing", "trilogy+bf16"]


def make_checkpoint(folder: Path, max_seq: int) -> None:
    """A random GPT-2 saved by transformers itself: both contenders load these weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_embd=SHAPE["d_model"], n_layer=SHAPE["n_layers"], n_head=SHAPE["n_heads"],
                        vocab_size=SHAPE["vocab"], n_positions=max_seq)
    GPT2LMHeadModel(config).save_pretrained(folder)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def worker(name: str, folder: str, seq: int) -> dict:
    import torch
    import transformers  # noqa: F401  (imported by every contender so the baselines match)

    import trilogy

    torch.manual_seed(0)
    ids = torch.randint(0, SHAPE["vocab"], (SHAPE["batch"], seq))
    if name == "transformers":
        model = transformers.GPT2LMHeadModel.from_pretrained(folder)
        loss_fn = lambda: model(input_ids=ids, labels=ids).loss  # noqa: E731  (HF shifts the labels itself)
    else:
        model = trilogy.from_pretrained(folder, checkpoint_activations=name == "trilogy+checkpointing")
        labels = torch.cat([ids[:, 1:], torch.full((ids.size(0), 1), -100)], dim=1)
        loss_fn = lambda: model.run(ids, labels=labels).loss  # noqa: E731
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    before = rss_bytes()
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("bf16")):
        loss = loss_fn()
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row = dict(contender=name, seq=seq, peak_bytes=peak, step_growth_bytes=peak - before, weights_bytes=weights,
               step_seconds=seconds, loss=float(loss))
    if name != "transformers":
        row["estimate_bytes"] = estimate(model.config, name, seq)
    return row


def estimate(config, name: str, seq: int) -> int:
    """``trilogy size``'s peak for this contender's step (see the module docstring for the attention path)."""
    from trilogy.sizing import memory_breakdown

    return memory_breakdown(config, SHAPE["batch"], seq, precision="bf16-autocast" if name.endswith("bf16") else
                            "fp32", attention="sdpa",
                            checkpointing=name == "trilogy+checkpointing")["total"]


def run_isolated(name: str, folder: Path, seq: int, unmap_freed: bool = False) -> dict:
    """One contender in a fresh process; a process that dies (e.g. killed when memory runs out) is reported.
    ``unmap_freed``: glibc returns every freed block over 64 KiB to the system at once."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536") if unmap_freed else None
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--folder", str(folder), "--seq", str(seq)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        reason = f"killed by signal {-out.returncode}" if out.returncode < 0 else f"exit {out.returncode}"
        return dict(contender=name, seq=seq, failed=reason)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.seq[0])))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt2"
        make_checkpoint(folder, max(args.seq))
        for seq in args.seq:
            for name in args.contenders:
                row = run_isolated(name, folder, seq)
                if name != "transformers" and "failed" not in row:
                    again = run_isolated(name, folder, seq, unmap_freed=True)
                    row["unmapped_growth_bytes"] = again.get("step_growth_bytes")
                rows.append(row)
                if not args.json:
                    print(f"  measured {name} at seq {seq}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    mib = 2**20
    print(f"One training step, GPT-2 shape {SHAPE}, fp32 unless noted; peak RSS of a fresh process")
    print(f"{'seq':>5} {'contender':24} {'peak MiB':>9} {'step growth MiB':>16} {'vs HF peak':>10} "
          f"{'step s':>7} {'loss':>7} {'estimate MiB':>13} {'est/RSS':>8} {'est/RSS*':>9}")
    for seq in args.seq:
        hf = next((r for r in rows if r["seq"] == seq and r["contender"] == "transformers"), None)
        for r in (r for r in rows if r["seq"] == seq):
            if "failed" in r:
                print(f"{seq:5d} {r['contender']:24} {'failed: ' + r['failed']:>36}")
                continue
            ratio = f"{r['peak_bytes'] / hf['peak_bytes']:.2f}x" if hf and "failed" not in hf else "-"
            estimate = r.get("estimate_bytes")
            shown = f"{estimate / mib:.0f}" if estimate else "-"
            versus = [f"{estimate / (growth + r['weights_bytes']):.2f}" if estimate and growth else "-"
                      for growth in (r["step_growth_bytes"], r.get("unmapped_growth_bytes"))]
            print(f"{seq:5d} {r['contender']:24} {r['peak_bytes'] / mib:9.0f} {r['step_growth_bytes'] / mib:16.0f} "
                  f"{ratio:>10} {r['step_seconds']:7.2f} {r['loss']:7.3f} "
                  f"{shown:>13} {versus[0]:>8} {versus[1]:>9}")
    print("estimate: trilogy.sizing; est/RSS: estimate / (step growth + weights); est/RSS*: the same in a process "
          "whose glibc unmaps freed blocks (MALLOC_MMAP_THRESHOLD_=65536)")


if __name__ == "__main__":
    main()
