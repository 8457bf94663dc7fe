"""The fused, chunked LM-head cross-entropy (``trilogy.blocks.loss``) against the plain path (``F.linear`` then
``F.cross_entropy``), forward and backward, at several chunk sizes and vocabularies.

For each (rows, width, vocabulary) it prints the milliseconds of the plain path and of the fused loss at its
default chunk (``loss_chunk_rows``) and at fixed chunks of 64 to 1024 rows, the contenders interleaved, medians
over the rounds; and the plain path's time over the default chunk's.

    .venv/bin/python benchmarks/loss.py
    .venv/bin/python benchmarks/loss.py --rounds 9 --threads 1 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from trilogy.blocks.loss import linear_cross_entropy, loss_chunk_rows

SHAPES = [(2048, 128, 2048), (1024, 256, 8192), (2048, 256, 8192), (2048, 512, 32000), (2048, 768, 50257)]
CHUNKS = (64, 128, 256, 512, 1024)


def timed(fn) -> float:
    start = time.perf_counter()
    fn().backward()
    return time.perf_counter() - start


def bench(rows: int, width: int, vocab: int, rounds: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(rows, width, generator=generator).requires_grad_()
    weight = (torch.randn(vocab, width, generator=generator) * 0.05).requires_grad_()
    labels = torch.randint(0, vocab, (rows,), generator=generator)
    default = loss_chunk_rows(vocab)
    contenders = {"plain": lambda: F.cross_entropy(F.linear(hidden, weight), labels, reduction="sum")}
    for chunk in sorted({default, *CHUNKS}):
        contenders[f"chunk {chunk}"] = lambda chunk=chunk: linear_cross_entropy(hidden, weight, None, labels,
                                                                                chunk_rows=chunk)[0]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds + 1):  # the first round warms up
        for name, fn in contenders.items():
            times[name].append(timed(fn))
            hidden.grad = weight.grad = None
    medians = {name: 1000 * statistics.median(values[1:]) for name, values in times.items()}
    return {"rows": rows, "width": width, "vocab": vocab, "default_chunk": default, "ms": medians,
            "plain_over_default": medians["plain"] / medians[f"chunk {default}"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench(*shape, args.rounds) for shape in SHAPES]
    if args.json:
        print(json.dumps(results))
        return
    print(f"fused loss forward + backward, fp32, {args.threads} threads, medians of {args.rounds} interleaved rounds (ms)")
    for result in results:
        cells = "  ".join(f"{name} {ms:.1f}" for name, ms in result["ms"].items())
        print(f"rows {result['rows']}, C {result['width']}, V {result['vocab']} (default chunk "
              f"{result['default_chunk']}): {cells}; plain / default {result['plain_over_default']:.2f}x")


if __name__ == "__main__":
    main()
