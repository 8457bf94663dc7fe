"""What unused hook points cost: a forward pass, a training step and a decoding step, timed with this tree's
trilogy (hook points in every block, no hook registered) against another tree's (the commit before them), in one
process, on the same weights, alternating call by call.

Two models, GPT-2-shaped (learned positions, LayerNorm, GELU; d_model 384, 6 layers, 6 heads) and
Llama-shaped (RoPE, RMSNorm, SwiGLU, 2 key/value heads for 6 query heads), vocabulary 8192. Per model: the
forward pass of (4, 128) tokens (no grad), a training step on them (forward, backward, AdamW), and one cached
decoding step of one token after a 16-token prompt. The other tree's package is imported under another name
(``trilogy_before``); the two models alternate every call (the first of each pair alternating too), on one
thread, and each figure is the median of its calls, so both see the same load.

    git archive COMMIT src | tar -x -C /tmp/before      # the tree without hook points
    .venv/bin/python benchmarks/hook_overhead.py --before /tmp/before/src [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import trilogy

SHAPES = {
    "gpt2": dict(arch="decoder", vocab_size=8192, d_model=384, n_heads=6, n_layers=6, d_ff=1536, max_seq_len=512,
                 activation="gelu_tanh", dropout=0.0),
    "llama": dict(arch="decoder", vocab_size=8192, d_model=384, n_heads=6, n_kv_heads=2, n_layers=6, d_ff=1024,
                  max_seq_len=512, norm="rmsnorm", norm_bias=False, activation="silu", gated_mlp=True, bias=False,
                  position="rope", tie_embeddings=False, dropout=0.0),
}
REPEATS = {"forward": 30, "train step": 12, "decode step": 400}


def import_as(src: Path, name: str):
    """The ``trilogy`` package of another tree, imported as ``name`` (its imports inside are relative)."""
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(src / "trilogy", folder / name)
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def alternating(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of ``first()`` and ``second()``, called in turn ``repeats`` times each."""
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(repeats):
        for which in ((0, 1) if index % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            (first, second)[which]()
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def compare(before_package, shape: dict) -> dict[str, tuple[float, float]]:
    torch.manual_seed(0)
    before = before_package.build(before_package.ModelConfig(**shape))
    hooks = trilogy.build(trilogy.ModelConfig(**shape))
    hooks.load_state_dict(before.state_dict())
    models = (before, hooks)
    tokens = torch.randint(0, shape["vocab_size"], (4, 128))
    results = {}
    for model in models:
        model.eval()
    with torch.no_grad():
        results["forward"] = alternating(*(lambda m=m: m(tokens) for m in models), REPEATS["forward"])
    steps = []
    for model in models:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step(model=model, optimizer=optimizer):
            model.run(tokens[:, :-1], labels=tokens[:, 1:]).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        train_step()
        steps.append(train_step)
    results["train step"] = alternating(*steps, REPEATS["train step"])
    decoders = []
    for model in models:
        model.eval()
        decoders.append(_decoder(model, tokens[:1, :16]))
    with torch.no_grad():
        results["decode step"] = alternating(*decoders, REPEATS["decode step"])
    return results


def _decoder(model, prompt: torch.Tensor):
    """One cached decoding step per call, restarting from the prompt every 64 steps (so the cache stays short)."""
    state = {}

    def restart():
        inputs, _ = model.start(prompt, max_new_tokens=80)
        cache = model.new_cache(1, 96)
        logits, cache = model.step(inputs, cache)
        state.update(inputs=inputs, cache=cache, logits=logits, steps=0)

    def step():
        if not state or state["steps"] == 64:
            restart()
        inputs = state["inputs"].advance(state["logits"].argmax(-1, keepdim=True))
        state["logits"], state["cache"] = model.step(inputs, state["cache"])
        state["inputs"], state["steps"] = inputs, state["steps"] + 1

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the src folder of the tree to compare against")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    before_package = import_as(args.before, "trilogy_before")
    table = {}
    for name, shape in SHAPES.items():
        for step, (before_s, hooks_s) in compare(before_package, shape).items():
            table[f"{name} {step}"] = {"before_ms": before_s * 1000, "hooks_ms": hooks_s * 1000,
                                       "ratio": hooks_s / before_s}
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(f"{'':18} {'before ms':>10} {'hooks ms':>10} {'ratio':>7}   (one thread, alternating calls)")
    for key, row in table.items():
        print(f"{key:18} {row['before_ms']:10.3f} {row['hooks_ms']:10.3f} {row['ratio']:7.3f}")


if __name__ == "__main__":
    main()
