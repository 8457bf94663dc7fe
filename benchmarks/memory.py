"""Peak memory of one training step: trilogy vs Hugging Face transformers on identical weights.

GPT-2-shaped model (d_model 256, 4 layers, 4 heads, vocab 8192), batch 8, fp32, one step of forward + backward +
AdamW at sequence 256, 1024 and 4096. Each contender runs in its own fresh process that imports the same modules
(torch and transformers) and loads the same checkpoint folder, so their baselines match; the figure is the
process's peak resident set size (ru_maxrss) after the step, and the step's own growth over the RSS just before it.

    python benchmarks/memory.py                    # all sequences, all contenders
    python benchmarks/memory.py --seq 1024 --json

Contenders: transformers; trilogy; trilogy with activation checkpointing; trilogy with bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
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
        model = trilogy.from_pretrained(folder)
        model.set_activation_checkpointing(name == "trilogy+checkpointing")
        labels = torch.cat([ids[:, 1:], torch.full((ids.size(0), 1), -100)], dim=1)
        loss_fn = lambda: model.run(ids, labels=labels).loss  # noqa: E731
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = rss_bytes()
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("bf16")):
        loss = loss_fn()
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(contender=name, seq=seq, peak_bytes=peak, step_growth_bytes=peak - before,
                step_seconds=seconds, loss=float(loss))


def run_isolated(name: str, folder: Path, seq: int) -> dict:
    """One contender in a fresh process; a process that dies (e.g. killed when memory runs out) is reported."""
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--folder", str(folder), "--seq", str(seq)],
                         capture_output=True, text=True)
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
                rows.append(run_isolated(name, folder, seq))
                if not args.json:
                    print(f"  measured {name} at seq {seq}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    mib = 2**20
    print(f"One training step, GPT-2 shape {SHAPE}, fp32 unless noted; peak RSS of a fresh process")
    print(f"{'seq':>5} {'contender':24} {'peak MiB':>9} {'step growth MiB':>16} {'vs HF peak':>10} "
          f"{'step s':>7} {'loss':>7}")
    for seq in args.seq:
        hf = next((r for r in rows if r["seq"] == seq and r["contender"] == "transformers"), None)
        for r in (r for r in rows if r["seq"] == seq):
            if "failed" in r:
                print(f"{seq:5d} {r['contender']:24} {'failed: ' + r['failed']:>36}")
                continue
            ratio = f"{r['peak_bytes'] / hf['peak_bytes']:.2f}x" if hf and "failed" not in hf else "-"
            print(f"{seq:5d} {r['contender']:24} {r['peak_bytes'] / mib:9.0f} {r['step_growth_bytes'] / mib:16.0f} "
                  f"{ratio:>10} {r['step_seconds']:7.2f} {r['loss']:7.3f}")


if __name__ == "__main__":
    main()
