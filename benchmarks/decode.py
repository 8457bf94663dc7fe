"""Decoding at the memory roofline: greedy per-step time of trilogy in float32, bfloat16 (prepacked for oneDNN,
and as loaded), int8 and int4, each eager and compiled, against transformers (float32, bfloat16) and against
the least time the step's memory traffic allows.

The model is Llama-shaped like SmolLM-135M (vocabulary 49152, width 576, 30 layers, 9 query and 3 key/value heads,
SwiGLU 1536, tied embeddings), random-initialised by transformers, saved with its ``save_pretrained`` and loaded
with ``trilogy.from_pretrained`` (then ``trilogy.prepack``, or ``quantize=`` for int8 and int4; "unpacked" rows
are the model as loaded, with ``nn.Linear``; "compiled" rows decode the model as loaded or quantised with
``compile=True``: a step compiled by ``torch.compile`` over a static cache, its one-row products streamed by
inductor's loops, see ``src/trilogy/models/step_compiler.py``). A step at batch B reads every weight it
multiplies by once (the head over the vocabulary included) and the KV cache; the roofline is those bytes over the
read bandwidth measured here: a reduction over a tensor far larger than the caches (best of 3), measured right
before each timed run, since a shared machine's bandwidth moves during a benchmark (here by up to 2x). Each
run's share of the roofline is its roofline time at the bandwidth measured before it over its time; the share
printed is the median of a contender's runs, the roofline time that at the median bandwidth. Each contender
decodes a 16-token prompt into 1 token (the prefill) and, right after, into 1 + ``--new-tokens`` tokens (no EOS
stop); the time per step is the difference over ``--new-tokens``: the decoding steps alone. Runs are interleaved
(the order rotates every repeat) and each contender's median is taken. Beside each share and each speed-up is
its range over the repeats (a speed-up's per repeat is the ratio of the two contenders' runs in that repeat),
and a target is met only when every repeat reaches it, missed when none does, and otherwise a tie.

Checks printed beside the times: float32 and bfloat16 greedy tokens against transformers' at the same dtype, and
the fraction of next-token predictions on the decoded text that agree with unpacked float32's (weights
are random here, so perplexity means little; the held-out perplexity check on a trained model is
``tests/test_quantize.py``). transformers' own CPU weight-only quantisation goes through torchao, which this
project does not install, so it has no int8 / int4 row.

    .venv/bin/python benchmarks/decode.py                 # batch 1 and 8, 3 repeats
    .venv/bin/python benchmarks/decode.py --batches 1 --json
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
from transformers import LlamaConfig, LlamaForCausalLM

import trilogy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import decoding_arguments, read_bandwidth  # noqa: E402  (this folder's generate benchmark)

#: the issue's targets at batch 1, for the eager step and for the compiled one: share of the roofline per
#: format, and speed-ups between formats (within one mode) and against transformers
ROOFLINE_TARGETS = {f"{dtype}{mode}": share for dtype, share in (("float32", 0.80), ("bfloat16", 0.70))
                    for mode in ("", " compiled")}
SPEEDUP_TARGETS = {(f"{fast}{mode}", f"{slow}{mode}" if not slow.startswith("transformers") else slow): target
                   for mode in ("", " compiled")
                   for fast, slow, target in (("int8", "float32", 2.0), ("int4", "float32", 3.0),
                                              ("bfloat16", "float32", 1.0),
                                              ("bfloat16", "transformers bfloat16", 1.5))}
#: speed-ups shown without a target: the compiled step against the eager one (prepacked and as loaded) and
#: against transformers'
COMPILED_SPEEDUPS = [*[(f"{dtype} compiled", eager) for dtype in ("float32", "bfloat16")
                       for eager in (dtype, f"{dtype} unpacked", f"transformers {dtype}")],
                     ("int8 compiled", "int8"), ("int4 compiled", "int4")]
SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
             num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True, max_position_embeddings=2048)


def build(folder: str, seed: int) -> dict:
    """The contenders' models, all from one checkpoint written by transformers."""
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**SHAPE, bos_token_id=None, eos_token_id=None)).save_pretrained(folder)
    reference = LlamaForCausalLM.from_pretrained(folder).eval()
    return {
        "float32": trilogy.prepack(trilogy.from_pretrained(folder)),
        "bfloat16": trilogy.prepack(trilogy.from_pretrained(folder, dtype=torch.bfloat16)),
        "float32 unpacked": trilogy.from_pretrained(folder),
        "bfloat16 unpacked": trilogy.from_pretrained(folder, dtype=torch.bfloat16),
        "float32 compiled": trilogy.from_pretrained(folder),
        "bfloat16 compiled": trilogy.from_pretrained(folder, dtype=torch.bfloat16),
        "int8": trilogy.from_pretrained(folder, quantize="int8"),
        "int4": trilogy.from_pretrained(folder, quantize="int4"),
        "int8 compiled": trilogy.from_pretrained(folder, quantize="int8"),
        "int4 compiled": trilogy.from_pretrained(folder, quantize="int4"),
        "transformers float32": reference,
        "transformers bfloat16": LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval(),
    }


def weight_bytes(model: trilogy.TransformerModel) -> int:
    """Bytes of the tensors a decoding step multiplies by: every parameter and buffer once (a tied head's
    matrix is the embeddings'), less the embedding table when the head has its own copy (a step looks up one
    row of it per sequence)."""
    tensors = {_address(t): t for t in [*model.parameters(), *model.buffers()]}
    table = model.embeddings.tokens.weight
    head = model.output_projection()
    if head is not None and (not isinstance(head, torch.nn.Linear) or head.weight.data_ptr() != table.data_ptr()):
        tensors.pop(_address(table))
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _address(tensor: torch.Tensor) -> int:
    """Where a tensor's data start; a prepacked weight (oneDNN's opaque layout) has no storage of its own."""
    return tensor.data_ptr() if tensor.layout == torch.strided and not tensor.is_mkldnn else id(tensor)


def cache_bytes(model: trilogy.TransformerModel, batch: int, prompt: int, new_tokens: int) -> float:
    """The keys and values an average step reads: every layer's, at the mean cached length."""
    config = model.config
    element = 4 if model.embeddings.tokens.weight.dtype == torch.float32 else 2
    mean_length = prompt + new_tokens / 2
    return 2 * config.n_layers * batch * config.n_kv_heads * config.d_head * mean_length * element


def runner(name: str, model, prompt: torch.Tensor, new_tokens: int):
    if name.startswith("transformers"):
        mask = torch.ones_like(prompt)

        def run():
            with torch.inference_mode():
                return model.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False)
        return run
    compiled = name.endswith(" compiled")
    return lambda: model.generate(prompt, max_new_tokens=new_tokens, eos_token_id=None, compile=compiled)


def eager_twin(name: str) -> str:
    """The eager contender a compiled one starts from: the model as loaded (float32, bfloat16) or quantised."""
    fmt = name.removesuffix(" compiled")
    return fmt if fmt in ("int8", "int4") else f"{fmt} unpacked"


def agreement(model, reference, tokens: torch.Tensor) -> float:
    """Fraction of positions of ``tokens`` (B, T) where ``model`` predicts the same next token as ``reference``."""
    with torch.inference_mode():
        return (model(tokens).argmax(-1) == reference(tokens).argmax(-1)).float().mean().item()


def head_products(models: dict, rounds: int = 30) -> dict:
    """The LM head's product alone for one row (49152 x 576), per format, as the eager rows compute it (the
    prepacked or quantised layer's kernel) and as the compiled rows do (the layer as loaded or quantised, in a
    step compiled like theirs): milliseconds (interleaved medians), and the head's stored bytes over that time
    against the read bandwidth measured between the rounds. A product that streams its bytes well below the
    bandwidth is bound by its arithmetic (unpacking integers), not by memory."""
    from trilogy.models.step_compiler import compile_step

    row = torch.randn(1, SHAPE["hidden_size"])
    products, stored = {}, {}
    for fmt in ("float32", "bfloat16", "int8", "int4"):
        for mode in ("eager", "compiled"):
            head = models[fmt if mode == "eager" else f"{fmt} compiled"].lm_head.proj
            rows = row.to(head.weight.dtype) if isinstance(head, torch.nn.Linear) else row
            product = _product_of(head, rows)
            products[f"{fmt} {mode}"] = compile_step(product) if mode == "compiled" else product
            stored[f"{fmt} {mode}"] = sum(t.numel() * t.element_size()
                                          for t in [*head.parameters(), *head.buffers()])
    times: dict[str, list[float]] = {name: [] for name in products}
    bandwidths = []
    with torch.inference_mode():
        for product in products.values():
            product()  # a compiled one compiles
        for _ in range(rounds):
            bandwidths.append(read_bandwidth(1024))
            for name, product in products.items():
                start = time.perf_counter()
                product()
                times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(t[3:]) for name, t in times.items()}  # the first rounds warm up
    return {"ms": ms, "stored_bytes": stored, "read_bytes_per_second": statistics.median(bandwidths),
            "stored_bytes_per_second": {name: stored[name] / (ms[name] / 1000) for name in ms}}


def _product_of(head: torch.nn.Module, rows: torch.Tensor):
    def product() -> torch.Tensor:
        return head(rows)
    return product


def top2_margin(model, tokens: torch.Tensor) -> float:
    """The median gap between the two largest logits: how near a tie the next-token choice is (random weights
    give small gaps, which any rounding may flip)."""
    with torch.inference_mode():
        top = model(tokens).float().topk(2, dim=-1).values  # (B, T, 2)
    return (top[..., 0] - top[..., 1]).median().item()


def measure(batch: int, args, models: dict, progress) -> dict:
    generator = torch.Generator().manual_seed(args.seed + batch)
    prompt = torch.randint(0, SHAPE["vocab_size"], (batch, args.prompt), generator=generator)
    runs = {name: runner(name, model, prompt, 1 + args.new_tokens) for name, model in models.items()}
    prefills = {name: runner(name, model, prompt, 1) for name, model in models.items()}
    outputs, first_call_s = {}, {}
    for name, run in runs.items():  # warm-up (a compiled contender compiles its step), and the tokens to compare
        start = time.perf_counter()
        outputs[name] = run()
        first_call_s[name] = time.perf_counter() - start
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    bandwidths: dict[str, list[float]] = {name: [] for name in runs}  # measured before each of the runs
    names = list(runs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            bandwidths[name].append(read_bandwidth(1024))
            start = time.perf_counter()
            prefills[name]()
            prefill = time.perf_counter() - start
            start = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - start - prefill)  # the steps after the first token
            progress.update()
    step_ms = {name: 1000 * statistics.median(times) / args.new_tokens for name, times in seconds.items()}
    roofline_ms, run_shares = {}, {}
    everyone = [b for runs_bandwidths in bandwidths.values() for b in runs_bandwidths]
    for name in names:
        ours = models[name.removeprefix("transformers ")]  # transformers' model reads the same bytes
        traffic = weight_bytes(ours) + cache_bytes(ours, batch, args.prompt, args.new_tokens)
        roofline_ms[name] = 1000 * traffic / statistics.median(everyone)
        run_shares[name] = [traffic / bandwidth / (elapsed / args.new_tokens)
                            for bandwidth, elapsed in zip(bandwidths[name], seconds[name], strict=True)]
    full = outputs["float32 unpacked"]
    return {
        "batch": batch, "ms_per_step": step_ms, "read_bytes_per_second": everyone,
        "tokens_per_second": {name: 1000 * batch / ms for name, ms in step_ms.items()},
        "roofline_ms_per_step": roofline_ms,
        "share_of_roofline": {name: statistics.median(shares) for name, shares in run_shares.items()},
        "share_of_roofline_runs": run_shares,
        "same_tokens_as_transformers": {dtype: torch.equal(outputs[dtype], outputs[f"transformers {dtype}"])
                                        for dtype in ("float32", "bfloat16")},
        "next_token_agreement_with_float32": {fmt: agreement(models[fmt], models["float32 unpacked"], full)
                                              for fmt in ("float32", "bfloat16", "int8", "int4")},
        "float32_top2_margin_median": top2_margin(models["float32 unpacked"], full),
        "speedups": {f"{fast} vs {slow}": step_ms[slow] / step_ms[fast] for fast, slow in
                     [*SPEEDUP_TARGETS, *COMPILED_SPEEDUPS]},
        # one ratio per repeat: the two contenders' runs of that repeat
        "speedup_runs": {f"{fast} vs {slow}": [s / f for s, f in zip(seconds[slow], seconds[fast], strict=True)]
                         for fast, slow in [*SPEEDUP_TARGETS, *COMPILED_SPEEDUPS]},
        "compiled_first_call_s": {name: s for name, s in first_call_s.items() if name.endswith(" compiled")},
        "compiled_same_tokens_as_eager": {name: torch.equal(outputs[name], outputs[eager_twin(name)])
                                          for name in names if name.endswith(" compiled")},
    }


def verdict(runs: list[float], target: float | None, unit: str) -> str:
    """Against a target (a share if ``unit`` is "%", a speed-up if "x"): met when every repeat reaches it, NOT
    met when none does, and a tie when the repeats fall on both sides (the machine's noise is as large as the
    gap)."""
    if target is None:
        return "-"
    shown = f"{target:.0%}" if unit == "%" else f"{target:.1f}x"
    if min(runs) >= target:
        return f">= {shown} met"
    return f">= {shown} {'NOT met' if max(runs) < target else 'tie (repeats on both sides)'}"


def report(results: list[dict], args, load: tuple) -> None:
    print(f"greedy decoding, SmolLM-135M shape (30 layers, width 576, vocabulary 49152); prompt {args.prompt}, "
          f"{args.new_tokens} new tokens; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.repeats} interleaved repeats, medians; load average {load[0]:.1f} -> {load[1]:.1f}")
    for r in results:
        bandwidths = r["read_bytes_per_second"]
        print(f"\nbatch {r['batch']}: read bandwidth {statistics.median(bandwidths) / 1e9:.1f} GB/s, the median of "
              f"{len(bandwidths)} measurements, one before each run ({min(bandwidths) / 1e9:.1f} to "
              f"{max(bandwidths) / 1e9:.1f}); share: each run's roofline time over its time, median and range "
              f"over the repeats; a speed-up's range: the ratio within each repeat")
        print(f"  {'contender':22s} {'ms/step':>8s} {'tokens/s':>9s} {'roofline ms':>11s} {'share':>6s} "
              f"{'runs':>9s}  target")
        for name, ms in r["ms_per_step"].items():
            runs = r["share_of_roofline_runs"][name]
            target = ROOFLINE_TARGETS.get(name) if r["batch"] == 1 else None
            print(f"  {name:22s} {ms:8.2f} {r['tokens_per_second'][name]:9.1f} "
                  f"{r['roofline_ms_per_step'][name]:11.2f} {r['share_of_roofline'][name]:6.0%} "
                  f"{f'{min(runs):.0%}-{max(runs):.0%}':>9s}  {verdict(runs, target, '%')}")
        for pair, ratio in r["speedups"].items():
            fast, slow = pair.split(" vs ")
            runs = r["speedup_runs"][pair]
            target = SPEEDUP_TARGETS.get((fast, slow)) if r["batch"] == 1 else None
            print(f"  {pair:48s} {ratio:5.2f}x {f'{min(runs):.2f}-{max(runs):.2f}x':>11s}  "
                  f"{verdict(runs, target, 'x')}")
        same = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["same_tokens_as_transformers"].items())
        agree = ", ".join(f"{k} {v:.1%}" for k, v in r["next_token_agreement_with_float32"].items())
        print(f"  same greedy tokens as transformers: {same}; next-token agreement with float32: {agree} "
              f"(float32's median gap between its top two logits: {r['float32_top2_margin_median']:.3f})")
        first = ", ".join(f"{k} {v:.1f} s" for k, v in r["compiled_first_call_s"].items())
        same = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["compiled_same_tokens_as_eager"].items())
        print(f"  compiled step: first call (compiling, then {1 + args.new_tokens} tokens) {first}; "
              f"same greedy tokens as eager (as loaded or quantised): {same}")


def report_head(heads: dict) -> None:
    print(f"\nthe LM head alone ({SHAPE['vocab_size']} x {SHAPE['hidden_size']}), one row: ms, and its stored bytes "
          f"over that time (read bandwidth "
          f"{heads['read_bytes_per_second'] / 1e9:.1f} GB/s, median of the rounds)")
    for name, ms in heads["ms"].items():
        print(f"  {name:18s} {ms:6.2f} ms  {heads['stored_bytes'][name] / 2**20:6.1f} MiB  "
              f"{heads['stored_bytes_per_second'][name] / 1e9:5.1f} GB/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    args = decoding_arguments(parser, argv, new_tokens=32, repeats=3)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        models = build(folder, args.seed)
    with tqdm(total=args.repeats * len(models) * len(args.batches), desc="timed runs", file=sys.stderr,
              disable=None) as progress:
        results = [measure(batch, args, models, progress) for batch in args.batches]
    heads = head_products(models)
    load = (load_before, os.getloadavg()[0])
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "load_average": load, "results": results,
                          "head_products": heads}, indent=2))
    else:
        report(results, args, load)
        report_head(heads)
    return 0 if all(r["same_tokens_as_transformers"]["float32"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
