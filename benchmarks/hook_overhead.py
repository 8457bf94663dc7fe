"""What unused hook points cost: a forward pass, a training step and a decoding step, timed with this tree's
``src`` (hook points in every block, no hook registered) against another tree's (the commit before them).

Two models, GPT-2-shaped (learned positions, LayerNorm, GELU; d_model 384, 6 layers, 6 heads) and
Llama-shaped (RoPE, RMSNorm, SwiGLU, 2 key/value heads for 6 query heads), vocabulary 8192, same seed in both
trees. Per model: the forward pass of (4, 128) tokens (no grad), a training step on them (forward, backward,
AdamW), and one cached decoding step of one token after a 16-token prompt (the median of 64). Each tree runs in
its own process, one thread; rounds alternate the order of the trees; each figure is the median over rounds.

    git archive COMMIT src | tar -x -C /tmp/before      # the tree without hook points
    .venv/bin/python benchmarks/hook_overhead.py --before /tmp/before/src [--rounds 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "gpt2": dict(arch="decoder", vocab_size=8192, d_model=384, n_heads=6, n_layers=6, d_ff=1536, max_seq_len=512,
                 activation="gelu_tanh", dropout=0.0),
    "llama": dict(arch="decoder", vocab_size=8192, d_model=384, n_heads=6, n_kv_heads=2, n_layers=6, d_ff=1024,
                  max_seq_len=512, norm="rmsnorm", norm_bias=False, activation="silu", gated_mlp=True, bias=False,
                  position="rope", tie_embeddings=False, dropout=0.0),
}


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure() -> dict[str, float]:
    """Milliseconds per forward, training step and decoding step of each model, in this process's trilogy."""
    import torch

    torch.set_num_threads(1)
    results = {}
    for name, shape in SHAPES.items():
        for step, seconds in _measure_model(shape).items():
            results[f"{name} {step}"] = seconds * 1000
    return results


def _measure_model(shape: dict) -> dict[str, float]:
    import torch

    import trilogy

    torch.manual_seed(0)
    model = trilogy.build(trilogy.ModelConfig(**shape))
    tokens = torch.randint(0, shape["vocab_size"], (4, 128))
    results = {}
    model.eval()
    with torch.no_grad():
        model(tokens)
        results["forward"] = _median_seconds(lambda: model(tokens), 9)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        loss = model.run(tokens[:, :-1], labels=tokens[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_step()
    results["train step"] = _median_seconds(train_step, 5)
    model.eval()
    with torch.no_grad():
        inputs, _ = model.start(tokens[:1, :16], max_new_tokens=80)
        cache = model.new_cache(1, 96)
        logits, cache = model.step(inputs, cache)
        times = []
        for _ in range(72):
            inputs = inputs.advance(logits.argmax(-1, keepdim=True))
            start = time.perf_counter()
            logits, cache = model.step(inputs, cache)
            times.append(time.perf_counter() - start)
    results["decode step"] = statistics.median(times[8:])
    return results


def run_tree(src: Path) -> dict[str, float]:
    environment = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--worker"], env=environment, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="the src folder of the tree to compare against")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure()))
        return
    if args.before is None:
        parser.error("--before SRC is needed (the tree without hook points)")
    trees = {"before": args.before.resolve(), "hooks": (Path(__file__).parent.parent / "src").resolve()}
    rounds: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for index in range(args.rounds):
        order = list(trees) if index % 2 == 0 else list(reversed(trees))
        for tree in order:
            rounds[tree].append(run_tree(trees[tree]))
    medians = {tree: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for tree, runs in rounds.items()}
    table = {key: {"before_ms": medians["before"][key], "hooks_ms": medians["hooks"][key],
                   "ratio": medians["hooks"][key] / medians["before"][key]} for key in medians["before"]}
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"{'':22} {'before ms':>10} {'hooks ms':>10} {'ratio':>7}   ({args.rounds} rounds, 1 thread)")
    for key, row in table.items():
        print(f"{key:22} {row['before_ms']:10.3f} {row['hooks_ms']:10.3f} {row['ratio']:7.3f}")


if __name__ == "__main__":
    main()
