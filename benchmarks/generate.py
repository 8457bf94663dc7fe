"""Greedy decoding speed: trilogy's cached ``generate`` against transformers' ``generate`` and the notebook's
``generate_text`` (which re-runs the whole sequence for every token), all on identical weights.

The model is GPT-2-shaped (d_model 384, 6 layers, 6 heads, vocab 8192), random-initialised by transformers,
saved with its ``save_pretrained`` and loaded with ``trilogy.from_pretrained``. Each contender decodes a
16-token prompt into 128 new tokens (no EOS stop), at batch 1 and 8. Runs are interleaved (the order rotates
every repeat), each contender's median is taken, and the ratios come from the same run. Before timing, the
tokens of all contenders are checked to be identical.

    .venv/bin/python benchmarks/generate.py            # batch 1 and 8, 5 repeats
    .venv/bin/python benchmarks/generate.py --json     # the same, as JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from tqdm import tqdm
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

import trilogy

TARGETS = {"vs_transformers": {1: 2.0, 8: 1.5}, "vs_notebook": {1: 10.0}}


def notebook_generate_text(model, input_ids, max_length=20, temperature=1.0):
    """The notebook's ``generate_text``, as the notebook wrote it: the whole sequence re-runs for each token."""
    model.eval()
    generated = input_ids.clone()

    for _ in range(max_length - input_ids.size(1)):
        with torch.no_grad():
            logits = model(generated)
            next_token_logits = logits[:, -1, :] / temperature
            next_token = torch.argmax(next_token_logits, dim=-1, keepdim=True)
            generated = torch.cat([generated, next_token], dim=1)

    return generated


def build_models(seed: int) -> tuple[GPT2LMHeadModel, trilogy.TransformerModel]:
    """The same random weights in transformers' GPT-2 and in trilogy (through its checkpoint loader)."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=8192, n_embd=384, n_layer=6, n_head=6, n_positions=1024,
                        bos_token_id=None, eos_token_id=None, pad_token_id=0)
    reference = GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = trilogy.from_pretrained(folder)
    return reference, ours.eval()


def contenders(reference, ours, prompt: torch.Tensor, new_tokens: int) -> dict:
    mask = torch.ones_like(prompt)

    def run_trilogy():
        return ours.generate(prompt, max_new_tokens=new_tokens)

    def run_transformers():
        with torch.inference_mode():
            return reference.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False)

    def run_notebook():
        return notebook_generate_text(ours, prompt, max_length=prompt.size(1) + new_tokens)

    return {"trilogy": run_trilogy, "transformers": run_transformers, "notebook": run_notebook}


def measure(batch: int, args, reference, ours, progress) -> dict:
    generator = torch.Generator().manual_seed(args.seed + batch)
    prompt = torch.randint(0, 8192, (batch, args.prompt), generator=generator)
    runs = contenders(reference, ours, prompt, args.new_tokens)
    if batch not in args.notebook_batches:
        del runs["notebook"]
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the tokens to compare
    identical = all(torch.equal(out, outputs["trilogy"]) for out in outputs.values())
    seconds = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            start = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - start)
            progress.update()
    median = {name: statistics.median(times) for name, times in seconds.items()}
    result = {
        "batch": batch, "identical_tokens": identical,
        "seconds_median": median, "seconds_all": seconds,
        "tokens_per_second": {name: batch * args.new_tokens / t for name, t in median.items()},
        "ms_per_step": {name: 1000 * t / args.new_tokens for name, t in median.items()},
        "speedup": {},
    }
    for other, key in (("transformers", "vs_transformers"), ("notebook", "vs_notebook")):
        if other in median:
            ratio = median[other] / median["trilogy"]
            target = TARGETS[key].get(batch)
            result["speedup"][key] = {"ratio": ratio, "target": target,
                                      "met": None if target is None else ratio >= target}
    return result


def read_bandwidth(megabytes: int = 256, rounds: int = 3) -> float:
    """Bytes per second this machine streams from memory into a reduction, best of ``rounds`` (the tensor is
    far larger than the caches, as the weights of a decoding step are)."""
    data = torch.ones(megabytes * 2**20 // 4)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def weight_floor(ours, bandwidth: float) -> dict:
    """The least time a batch-1 step can take: it multiplies by every weight (the tied head included), so it
    reads all of them from memory once, whatever the implementation."""
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    return {"weight_bytes": weight_bytes, "read_bytes_per_second": bandwidth,
            "floor_ms_per_step": 1000 * weight_bytes / bandwidth}


def report(results: list[dict], args, load: tuple, floor: dict) -> None:
    print(f"greedy decoding, GPT-2 shape d_model 384, 6 layers, 6 heads, vocab 8192; prompt {args.prompt}, "
          f"{args.new_tokens} new tokens; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.repeats} interleaved repeats, medians; load average {load[0]:.1f} -> {load[1]:.1f}")
    print(f"{'batch':>5s}  {'contender':12s} {'ms/step':>8s} {'tokens/s':>9s}  {'trilogy speedup':>15s}  target")
    for r in results:
        for name, tps in r["tokens_per_second"].items():
            speed = r["speedup"].get(f"vs_{name}")
            ratio = f"{speed['ratio']:.2f}x" if speed else "-"
            target = "-" if not speed or speed["target"] is None else (
                f">= {speed['target']:.1f}x {'met' if speed['met'] else 'NOT met'}")
            print(f"{r['batch']:5d}  {name:12s} {r['ms_per_step'][name]:8.2f} {tps:9.1f}  {ratio:>15s}  {target}")
        print(f"{'':5s}  identical tokens: {'yes' if r['identical_tokens'] else 'NO'}")
    print(f"memory floor: a step reads all {floor['weight_bytes'] / 2**20:.1f} MiB of weights; at this machine's "
          f"measured {floor['read_bytes_per_second'] / 1e9:.1f} GB/s that takes >= "
          f"{floor['floor_ms_per_step']:.2f} ms per step")


def decoding_arguments(parser: argparse.ArgumentParser, argv: list[str] | None, new_tokens: int, repeats: int
                       ) -> argparse.Namespace:
    """The options a decoding benchmark shares (batches, prompt, tokens, repeats, threads, seed, --json),
    parsed and checked; sets torch's threads and quiets transformers."""
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt", type=int, default=16, help="prompt length")
    parser.add_argument("--new-tokens", type=int, default=new_tokens)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.new_tokens < 1 or args.prompt < 1 or min(args.batches) < 1:
        parser.error("--repeats, --new-tokens, --prompt and --batches must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook-batches", type=int, nargs="*", default=[1],
                        help="batches at which to time the notebook's generate_text too (slow)")
    args = decoding_arguments(parser, argv, new_tokens=128, repeats=5)
    load_before = os.getloadavg()[0]
    reference, ours = build_models(args.seed)
    total = sum(args.repeats * (3 if b in args.notebook_batches else 2) for b in args.batches)
    with tqdm(total=total, desc="timed runs", file=sys.stderr, disable=None) as progress:
        results = [measure(batch, args, reference, ours, progress) for batch in args.batches]
    floor = weight_floor(ours, read_bandwidth())
    load = (load_before, os.getloadavg()[0])
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "load_average": load, "memory_floor": floor,
                          "results": results}, indent=2))
    else:
        report(results, args, load, floor)
    return 0 if all(r["identical_tokens"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
