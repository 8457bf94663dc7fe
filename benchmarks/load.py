"""Loading a checkpoint, as a user's fresh process does it: load time and peak resident memory of a process that
imports the library, loads a folder and runs one forward pass, trilogy against transformers on the same folder.

Four models that transformers writes here with random weights, fp32, in model.safetensors: GPT-2-shaped
(gpt2's sizes, 124M parameters), Llama-shaped (SmolLM-135M's sizes: GQA, tied head), T5-shaped (t5-small's
sizes, 60M) and a sliding-window Mistral of the Llama's sizes (every layer's window 256 tokens). Each round starts one process per library and model, alternating which library goes first; the
medians over rounds are printed side by side with their ratios. Load time is the ``from_pretrained`` call
alone; the process time also counts imports and the forward pass. Peak RSS is the process's high-water mark
(VmHWM), imports included; "above imports" subtracts the RSS the process had before loading. Every
process prints four logits, and trilogy's must match transformers' (|diff| < 1e-3).

    python benchmarks/load.py                       # 3 rounds, models written to a temporary folder
    python benchmarks/load.py --rounds 5 --dir /tmp/load-models   # keep (and reuse) the written models
    python benchmarks/load.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"peak_rss_mb": 1.10, "load_s": 1.0}  # trilogy / transformers at most
MODELS = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257)),
    "llama": ("LlamaForCausalLM", "LlamaConfig", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, tie_word_embeddings=True, max_position_embeddings=2048)),
    "t5": ("T5ForConditionalGeneration", "T5Config", dict(
        vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8)),
    "mistral": ("MistralForCausalLM", "MistralConfig", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, tie_word_embeddings=True, max_position_embeddings=2048, sliding_window=256)),
}
LIBRARIES = ("trilogy", "transformers")


def write_models(folder: Path) -> dict[str, Path]:
    """Each model's checkpoint folder, written by transformers unless already there."""
    import torch
    import transformers

    folders = {}
    for name, (model_class, config_class, sizes) in MODELS.items():
        folders[name] = folder / name
        if not (folders[name] / "config.json").is_file():
            torch.manual_seed(0)
            model = getattr(transformers, model_class)(getattr(transformers, config_class)(**sizes))
            model.save_pretrained(folders[name])
            del model
    return folders


def memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (the peak) of this process, from /proc: unlike ``ru_maxrss``, which
    Linux carries over from the parent across fork and exec, VmHWM starts afresh with the new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(library: str, family: str, folder: str) -> None:
    """The measured process: import, load, one forward; prints one JSON line."""
    start = time.perf_counter()
    import torch

    if library == "trilogy":
        import trilogy

        def load():
            return trilogy.from_pretrained(folder)
    else:
        import transformers

        auto = transformers.AutoModelForSeq2SeqLM if family == "t5" else transformers.AutoModelForCausalLM

        def load():
            return auto.from_pretrained(folder).eval()
    imported, baseline = time.perf_counter(), memory_mb("VmRSS")
    model = load()
    loaded = time.perf_counter()
    ids = torch.arange(1, 33)[None] * 97 % 30000  # (1, 32)
    with torch.no_grad():
        out = model(ids, decoder_input_ids=ids[:, :8]) if family == "t5" else model(ids)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    done = time.perf_counter()
    print(json.dumps({
        "import_s": imported - start, "load_s": loaded - imported, "forward_s": done - loaded,
        "process_s": done - start, "baseline_rss_mb": baseline,
        "peak_rss_mb": memory_mb("VmHWM"),
        "logits": logits[0, -1, :4].tolist(),
    }))


def measure(library: str, family: str, folder: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, __file__, "--child", library, family, str(folder)], env=env,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(folders: dict[str, Path], rounds: int) -> dict:
    runs: dict[str, dict[str, list[dict]]] = {name: {lib: [] for lib in LIBRARIES} for name in folders}
    for round_index in range(rounds):
        for name, folder in folders.items():
            order = LIBRARIES if round_index % 2 == 0 else LIBRARIES[::-1]
            for library in order:
                runs[name][library].append(measure(library, name, folder))
    report = {}
    for name, by_library in runs.items():
        ours, theirs = by_library["trilogy"][0]["logits"], by_library["transformers"][0]["logits"]
        worst = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
        if worst > 1e-3:
            raise RuntimeError(f"{name}: trilogy's logits differ from transformers' by {worst}")
        medians = {lib: {key: statistics.median(r[key] for r in results) for key in results[0] if key != "logits"}
                   for lib, results in by_library.items()}
        for lib in LIBRARIES:
            medians[lib]["above_imports_mb"] = medians[lib]["peak_rss_mb"] - medians[lib]["baseline_rss_mb"]
        size = sum(f.stat().st_size for f in folders[name].glob("*.safetensors")) / 2**20
        report[name] = {"file_mb": size, "rounds": rounds, "max_logit_diff": worst, **medians}
    return report


def cell(ours: dict, theirs: dict, key: str, width: int, digits: int) -> str:
    return f"{ours[key]:{width}.{digits}f} {theirs[key]:{width}.{digits}f} {ours[key] / theirs[key]:6.2f}x"


def table(report: dict) -> str:
    rows = [f"{'model':7s} {'file MB':>8s} | {'load s':>23s} | {'peak RSS MB':>26s} | {'above imports MB':>23s} | "
            f"{'process s':>21s}",
            f"{'':7s} {'':>8s} | {'trilogy  transf.  ratio':>23s} | {'trilogy  transf.  ratio':>26s} | "
            f"{'trilogy transf. ratio':>23s} | {'trilogy transf. ratio':>21s}"]
    verdicts = []
    for name, r in report.items():
        ours, theirs = r["trilogy"], r["transformers"]
        rows.append(f"{name:7s} {r['file_mb']:8.0f} | {cell(ours, theirs, 'load_s', 7, 2)} | "
                    f"{cell(ours, theirs, 'peak_rss_mb', 8, 0)} | {cell(ours, theirs, 'above_imports_mb', 7, 0)} | "
                    f"{cell(ours, theirs, 'process_s', 6, 2)}")
        for key, limit in TARGETS.items():
            ratio = ours[key] / theirs[key]
            verdicts.append(f"{name} {key}: {ratio:.2f}x (target <= {limit:.2f}x) {'met' if ratio <= limit else 'NOT met'}")
    return "\n".join(rows + [""] + verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="processes per library and model (3)")
    parser.add_argument("--dir", help="folder for the written models, kept and reused (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--child", nargs=3, metavar=("LIBRARY", "MODEL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as temporary:
        folders = write_models(Path(args.dir or temporary))
        report = run(folders, args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '1')}, {args.rounds} rounds, medians, fp32 on CPU")
    print(table(report))


if __name__ == "__main__":
    main()
