"""The prepared GPU check: everything trilogy wants measured on a CUDA device, in one call, with one summary.

Four parts, each timed and reported even when another fails:

- **tests**: the CUDA-marked tests (``pytest -m cuda``), passed / failed / skipped.
- **train**: a GPT-2-124M-shaped trilogy model (d_model 768, 12 layers, 12 heads, vocabulary 50257, sequence
  1024) trained under bf16 autocast with the library's fused AdamW: tokens/s and MFU, the achieved FLOP/s over
  the device's peak bf16 FLOP/s. The FLOPs of a step are counted by torch's ``FlopCounterMode`` on one real
  step (forward, backward), not taken from a formula; it counts attention's products as the full (T, T) square
  and the optimizer as none. The peak comes from ``PEAK_BF16_TFLOPS`` by device name, or ``--peak-tflops``;
  on another device MFU is unknown.
- **decode**: greedy decoding of a SmolLM-135M-shaped Llama (random weights made by transformers, saved with
  ``save_pretrained``, loaded by ``trilogy.from_pretrained``), bf16, batch 1 and 8: per-token time of trilogy
  against transformers eager and transformers with its static cache and ``torch.compile`` mode
  "reduce-overhead" (CUDA graphs). The tokens of trilogy and transformers eager are compared before timing;
  runs are interleaved, each contender's median is taken, ratios are from the same run.
- **demo**: a small ``trilogy demo`` on the device (its CLI, in a temporary folder): wall time and its matrix.

The subprocess parts (tests, demo) stop at their share of ``PART_SECONDS`` (the demo at what is left of
``--budget-s``, after Ctrl-C, so it writes its partial report); the decode part stops repeating at its share.
The demo reads its data from trilogy's cache (``$TRILOGY_CACHE``; docs/data.md): a machine without internet
needs it copied there first.

    python benchmarks/gpu.py                  # on a CUDA machine: sized for PART_SECONDS (510 s in all)
    python benchmarks/gpu.py --json           # the summary as one JSON object on stdout
    python benchmarks/gpu.py --dry            # on CPU: every part at toy sizes, in seconds
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import trilogy
from trilogy.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parent.parent

#: dense bf16 tensor-core peak, TFLOP/s, by ``torch.cuda.get_device_name()`` without its "NVIDIA " prefix.
#: NVIDIA's datasheets give these with 2:4 sparsity; the dense figure is half:
#: H100 SXM 1,979 (80GB HBM3 is the SXM5 part), H100 PCIe 1,513 (H100 datasheet, "BFLOAT16 Tensor Core");
#: H200 SXM 1,979 (H200 datasheet); A100 SXM4 and PCIe 624 (A100 datasheet, both form factors).
PEAK_BF16_TFLOPS = {
    r"H100 80GB HBM3|H100 SXM5?( \d+GB)?": 989.4,
    r"H100 PCIe": 756.5,
    r"H200( \d+GB HBM3e)?": 989.4,
    r"A100[- ](SXM4|PCIE|\d+GB).*": 312.0,
}

#: seconds each part may take on the GPU (sizes below are chosen to fit); 510 in all, under the 10 minutes
#: a one-call device run gets
PART_SECONDS = {"tests": 90, "train": 60, "decode": 240, "demo": 120}

#: SmolLM-135M's shape (https://huggingface.co/HuggingFaceTB/SmolLM-135M/blob/main/config.json)
SMOLLM_135M = dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, intermediate_size=1536, tie_word_embeddings=True,
                   max_position_embeddings=2048, rms_norm_eps=1e-5)


@dataclass(frozen=True)
class Plan:
    """What each part runs: the real sizes on a GPU, or toy ones on CPU for ``--dry``."""

    device: str
    pytest_args: tuple[str, ...]
    train_preset: str
    train_changes: dict
    train_batch: int
    train_seq: int
    warmup_steps: int
    timed_steps: int
    llama: dict
    decode_batches: tuple[int, ...]
    prompt: int
    new_tokens: int
    repeats: int
    compile_options: dict  # transformers' CompileConfig
    demo_args: tuple[str, ...]


GPU = Plan(
    device="cuda", pytest_args=("-m", "cuda"),
    train_preset="gpt2", train_changes=dict(dropout=0.0), train_batch=16, train_seq=1024,  # dropout: no matmul
    warmup_steps=3, timed_steps=20,
    llama=SMOLLM_135M, decode_batches=(1, 8), prompt=16, new_tokens=64, repeats=5,
    compile_options=dict(mode="reduce-overhead"),
    demo_args=("--size", "tiny", "--pretrain-flops", "1e12", "--finetune-steps", "50", "--max-train", "1000",
               "--max-eval", "100"),
)

DRY = Plan(
    device="cpu", pytest_args=("-m", "cuda", "tests/test_loading.py"),  # its CUDA tests skip here
    train_preset="tiny-gpt2", train_changes=dict(dropout=0.0), train_batch=2, train_seq=64,
    warmup_steps=1, timed_steps=2,
    llama=dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=128, tie_word_embeddings=True, max_position_embeddings=64),
    decode_batches=(1, 2), prompt=4, new_tokens=4, repeats=2,
    compile_options=dict(backend="eager", mode=None),  # traces as on the GPU, without inductor's minutes
    demo_args=("--size", "tiny", "--pretrain-flops", "1e9", "--finetune-steps", "2", "--max-train", "16",
               "--max-eval", "4", "--tasks", "polarity"),
)


class Clock:
    """Seconds since the start, for the progress lines on stderr."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, message: str) -> None:
        print(f"[gpu.py {self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(run: Callable[[], object], device: str) -> float:
    """Seconds ``run`` takes, the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def run_until(command: list[str], seconds: float, clock: Clock) -> tuple[int, str, bool]:
    """Run ``command``, its output passed on to stderr as progress (JSON lines kept back); after ``seconds``,
    Ctrl-C it so that it stops cleanly (pytest writes its report, the demo its partial one), and kill it if it
    still runs a minute later. Returns the exit code, its stdout and whether it was stopped."""
    # Ctrl-C reaches the command even where this script was started with it ignored (a shell's background job)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=_pass_on, args=(process.stdout, lines))
    reader.start()
    stopped = False
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        stopped = True
        clock.say(f"{' '.join(command[2:4])}: past its {seconds:.0f} s, interrupting")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    reader.join()
    return process.returncode, "".join(lines), stopped


def _pass_on(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
        if not line.startswith("{"):
            sys.stderr.write(line)


# ---- tests ---------------------------------------------------------------------------------------------------

def part_tests(plan: Plan, args, clock: Clock, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plan.pytest_args,
                   f"--junitxml={report}"]
        code, _, stopped = run_until(command, seconds, clock)
        suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return dict(command=" ".join(["python", *command[1:-1]]), returncode=code, stopped=stopped,
                passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                failed=counts["failures"], errors=counts["errors"], skipped=counts["skipped"],
                ok=code in (0, 5) and not stopped)  # 5: no test selected


# ---- train ---------------------------------------------------------------------------------------------------

def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a device named as torch names it; None for a device not in the table."""
    name = device_name.removeprefix("NVIDIA ").strip()
    return next((peak for pattern, peak in PEAK_BF16_TFLOPS.items() if re.fullmatch(pattern, name)), None)


def mfu(flops_per_step: float, seconds_per_step: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: the FLOP/s achieved over the peak (TFLOP/s); None when the peak is unknown."""
    return None if peak is None else flops_per_step / seconds_per_step / (peak * 1e12)


def training_step(model: trilogy.TransformerModel, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
                  labels: torch.Tensor) -> torch.Tensor:
    """One step as trilogy trains: labels into ``run`` (the head fused with the loss), bf16 autocast."""
    with torch.autocast(ids.device.type, dtype=torch.bfloat16):
        loss = model.run(ids, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def counted_flops(step: Callable[[], object]) -> int:
    """The FLOPs torch's counter sees in one call of ``step``: matmuls and attention, forward and backward (on
    CPU, torch's fused attention kernel has no FLOP formula, so attention counts there only on its math path;
    the CUDA kernels have one)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def random_batch(vocab: int, batch: int, seq: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) random ids and their next-token labels (already shifted, the last position not counted)."""
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    return ids, labels


def part_train(plan: Plan, args, clock: Clock, seconds: float) -> dict:
    torch.manual_seed(0)
    model = trilogy.build(plan.train_preset, max_seq_len=plan.train_seq, **plan.train_changes).to(plan.device)
    optimizer = build_optimizer(model.train(), lr=6e-4)
    ids, labels = random_batch(model.config.vocab_size, plan.train_batch, plan.train_seq, plan.device)

    def step() -> torch.Tensor:
        return training_step(model, optimizer, ids, labels)

    clock.say(f"train: counting one step's FLOPs, then {plan.warmup_steps} warm-up steps")
    flops = counted_flops(step)
    for _ in range(plan.warmup_steps):
        warmup_loss = step()
    clock.say(f"train: {plan.timed_steps} timed steps")
    times = [timed(step, plan.device) for _ in range(plan.timed_steps)]
    step_s = statistics.median(times)
    name = device_name(plan.device)
    peak, source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (peak_tflops(name), "table")
    tokens = plan.train_batch * plan.train_seq
    return dict(model=plan.train_preset, params=sum(p.numel() for p in model.parameters()),
                d_model=model.config.d_model, n_layers=model.config.n_layers, vocab=model.config.vocab_size,
                batch=plan.train_batch, seq=plan.train_seq, precision="bf16 autocast, fused AdamW",
                warmup_steps=plan.warmup_steps, timed_steps=plan.timed_steps, step_s=step_s,
                tokens_per_s=tokens / step_s, flops_per_step=flops, tflops=flops / step_s / 1e12,
                peak_tflops=peak, peak_source=source if peak else None, mfu=mfu(flops, step_s, peak),
                loss_after_warmup=warmup_loss.item(), ok=True)


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


# ---- decode --------------------------------------------------------------------------------------------------

REFERENCE = "transformers"  # the contender whose tokens every other one is checked against


def decode_contenders(folder: str, plan: Plan) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each contender decodes a prompt (B, T) greedily into (B, T + new tokens), never stopping early; one more
    row (a compiled trilogy, say) is one more entry here."""
    from transformers import CompileConfig, LlamaForCausalLM

    def reference() -> LlamaForCausalLM:
        return LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to(plan.device).eval()

    compile_config = CompileConfig(**plan.compile_options)
    # transformers compiles the decode step by itself only on accelerators; this flag (its own, "for testing
    # purposes") makes it compile on CPU too, for --dry
    compile_config._compile_all_devices = plan.device == "cpu"
    ours = trilogy.from_pretrained(folder, dtype=torch.bfloat16, device=plan.device).eval()
    eager, graphs = reference(), reference()
    new = dict(max_new_tokens=plan.new_tokens, do_sample=False)
    return {
        "trilogy": lambda prompt: ours.generate(prompt, max_new_tokens=plan.new_tokens, eos_token_id=None),
        REFERENCE: lambda prompt: eager.generate(prompt, attention_mask=torch.ones_like(prompt), **new),
        "transformers static+compiled": lambda prompt: graphs.generate(
            prompt, attention_mask=torch.ones_like(prompt), cache_implementation="static",
            compile_config=compile_config, **new),
    }


def decode_batch(runs: dict, batch: int, plan: Plan, clock: Clock, deadline: float) -> dict:
    """Warm-up (twice: compiling, then recording the CUDA graphs) and the tokens to compare, then interleaved
    timed repeats, the order rotating each repeat, until ``plan.repeats`` or the deadline."""
    generator = torch.Generator().manual_seed(batch)
    vocab = plan.llama["vocab_size"]
    prompt = torch.randint(0, vocab, (batch, plan.prompt), generator=generator).to(plan.device)
    outputs = {}
    for name, run in runs.items():
        clock.say(f"decode: batch {batch}, warming up {name}")
        run(prompt)
        outputs[name] = run(prompt).cpu()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(plan.repeats):
        if repeat and clock.elapsed() > deadline:
            clock.say(f"decode: batch {batch}, out of time after {repeat} repeats")
            break
        clock.say(f"decode: batch {batch}, timed repeat {repeat + 1}/{plan.repeats}")
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            seconds[name].append(timed(lambda run=runs[name]: run(prompt), plan.device))
    ms = {name: 1000 * statistics.median(times) / plan.new_tokens for name, times in seconds.items()}
    return dict(batch=batch, repeats=len(seconds["trilogy"]),
                same_tokens_as_transformers={name: torch.equal(out, outputs[REFERENCE]) for name, out in outputs.items()},
                ms_per_token=ms, tokens_per_s={name: 1000 * batch / value for name, value in ms.items()},
                vs_trilogy={name: value / ms["trilogy"] for name, value in ms.items()})


def part_decode(plan: Plan, args, clock: Clock, seconds: float) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    deadline = clock.elapsed() + seconds
    torch.manual_seed(0)
    config = LlamaConfig(**plan.llama, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    clock.say("decode: making the Llama-shaped model")
    with tempfile.TemporaryDirectory() as folder:
        made = LlamaForCausalLM(config).to(torch.bfloat16)
        params = sum(p.numel() for p in made.parameters())
        made.save_pretrained(folder)
        del made
        runs = decode_contenders(folder, plan)
    batches = [decode_batch(runs, batch, plan, clock, deadline) for batch in plan.decode_batches]
    return dict(shape={k: v for k, v in plan.llama.items() if k != "max_position_embeddings"}, params=params,
                dtype="bfloat16", prompt=plan.prompt, new_tokens=plan.new_tokens, batches=batches,
                ok=all(b["same_tokens_as_transformers"]["trilogy"] for b in batches))


# ---- demo ----------------------------------------------------------------------------------------------------

def part_demo(plan: Plan, args, clock: Clock, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "trilogy", "demo", "--device", plan.device, *plan.demo_args,
                   "--out", folder, "--json"]
        start = time.perf_counter()
        code, stdout, stopped = run_until(command, seconds, clock)
        wall = time.perf_counter() - start
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {}
    matrix = {task["name"]: {arch: cell["score"] for arch, cell in task["results"].items()}
              for task in report.get("tasks", [])}
    pretraining = [{key: unit[key] for key in ("arch", "steps", "flops", "seconds")}
                   for unit in report.get("pretraining", [])]
    return dict(command=" ".join(["python", *command[1:-3]]), returncode=code, stopped=stopped, wall_s=wall,
                interrupted=report.get("interrupted"), matrix=matrix, pretraining=pretraining,
                ok=code == 0 and bool(matrix))


PARTS: dict[str, Callable[[Plan, argparse.Namespace, Clock, float], dict]] = {
    "tests": part_tests, "train": part_train, "decode": part_decode, "demo": part_demo}


def run_parts(plan: Plan, args, clock: Clock) -> dict:
    """Each part in turn; one that raises is reported as failed with its error, and the others still run."""
    results = {}
    for name in args.parts:
        seconds = PART_SECONDS[name]
        if name == "demo":  # the last part gets what the budget has left, at most its share
            seconds = max(0.0, min(seconds, args.budget_s - clock.elapsed()))
        clock.say(f"{name}: starting (share {seconds:.0f} s)")
        start = time.perf_counter()
        try:
            result = PARTS[name](plan, args, clock, seconds)
        except Exception as error:  # noqa: BLE001 - a part's failure is a result; the summary still prints
            traceback.print_exc()
            result = dict(ok=False, error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        result["seconds"] = time.perf_counter() - start
        result["share_s"] = seconds
        results[name] = result
        clock.say(f"{name}: {'ok' if result['ok'] else 'NOT ok'} in {result['seconds']:.1f} s")
    return results


# ---- summary -------------------------------------------------------------------------------------------------

def one_line(name: str, r: dict) -> str:
    if "error" in r:
        return r["error"]
    if name == "tests":
        return (f"{r['passed']} passed, {r['failed']} failed, {r['errors']} errors, {r['skipped']} skipped "
                f"({r['command']}){' - stopped at its share' if r['stopped'] else ''}")
    if name == "train":
        share = "MFU unknown (device not in the table; give --peak-tflops)" if r["mfu"] is None else (
            f"MFU {100 * r['mfu']:.1f}% of {r['peak_tflops']:.1f} TFLOP/s ({r['peak_source']})")
        return (f"{r['model']} shape ({r['params'] / 1e6:.1f}M), batch {r['batch']} x {r['seq']}, {r['precision']}: "
                f"{r['step_s'] * 1000:.1f} ms/step, {r['tokens_per_s']:,.0f} tokens/s, {r['tflops']:.2f} TFLOP/s; "
                + share)
    if name == "decode":
        same = all(all(b["same_tokens_as_transformers"].values()) for b in r["batches"])
        return (f"Llama shape ({r['params'] / 1e6:.1f}M), {r['dtype']}, {r['new_tokens']} new tokens; trilogy's "
                f"tokens {'match' if r['ok'] else 'DIFFER FROM'} transformers'"
                + ("" if same else " (some contender's differ: see below)"))
    return (f"wall {r['wall_s']:.1f} s, {len(r['matrix'])} tasks, exit code {r['returncode']}"
            f"{', interrupted (partial report)' if r['interrupted'] or r['stopped'] else ''} ({r['command']})")


def print_summary(report: dict) -> None:
    print(f"trilogy GPU check on {report['device']}{' (DRY: toy sizes)' if report['dry'] else ''}: "
          f"torch {report['torch']}, CUDA {report['cuda']}, transformers {report['transformers']}; "
          f"{report['seconds']:.0f} s in all")
    print(f"\n{'part':7s} {'status':7s} {'s':>6s} {'share':>6s}  result")
    for name, r in report["parts"].items():
        print(f"{name:7s} {'ok' if r['ok'] else 'FAILED':7s} {r['seconds']:6.1f} {r['share_s']:6.0f}  {one_line(name, r)}")
    decode = report["parts"].get("decode", {})
    if decode.get("batches"):
        print(f"\ndecode, medians per token (prompt {decode['prompt']} + {decode['new_tokens']} new tokens; "
              "x trilogy: the contender's time over trilogy's, > 1 = trilogy faster)")
        print(f"{'batch':>5s}  {'contender':30s} {'ms/token':>9s} {'tokens/s':>9s} {'x trilogy':>9s}  "
              "tokens = transformers'  repeats")
        for b in decode["batches"]:
            for name, ms in b["ms_per_token"].items():
                print(f"{b['batch']:5d}  {name:30s} {ms:9.3f} {b['tokens_per_s'][name]:9.1f} "
                      f"{b['vs_trilogy'][name]:9.2f}  {'yes' if b['same_tokens_as_transformers'][name] else 'NO':22s} "
                      f"{b['repeats']}")
    demo = report["parts"].get("demo", {})
    if demo.get("matrix"):
        archs = list(next(iter(demo["matrix"].values())))
        print("\ndemo: held-out score per task and architecture (one seed)")
        print(f"{'task':14s} " + " ".join(f"{arch:>15s}" for arch in archs))
        for task, cells in demo["matrix"].items():
            print(f"{task:14s} " + " ".join(f"{'n/a' if cells[a] is None else format(cells[a], '.3f'):>15s}"
                                            for a in archs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dry", action="store_true", help="on CPU, every part at toy sizes (seconds)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), help="the parts to run")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for MFU (default: "
                        "from the table of known devices)")
    parser.add_argument("--budget-s", type=float, default=sum(PART_SECONDS.values()),
                        help="seconds for the whole run; the demo gets what is left (default %(default)s)")
    args = parser.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device (torch sees none); --dry runs it on CPU at toy sizes",
              file=sys.stderr)
        return 2
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error("--peak-tflops must be > 0")
    import transformers

    plan = DRY if args.dry else GPU
    clock = Clock()
    parts = run_parts(plan, args, clock)
    report = dict(device=device_name(plan.device), dry=args.dry, torch=torch.__version__, cuda=torch.version.cuda,
                  transformers=transformers.__version__, seconds=clock.elapsed(), parts=parts)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_summary(report)
    return 0 if all(part["ok"] for part in parts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
