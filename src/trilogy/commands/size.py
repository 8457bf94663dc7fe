"""``trilogy size``: parameters, FLOPs per token and memory of a preset, a config.json or a checkpoint folder,
computed from the config alone (see ``trilogy.sizing`` for what is counted and how it is checked)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import PRESETS, ModelConfig
from ..sizing import ATTENTION_PATHS, DTYPE_BYTES, size_report


def config_from(spec: str) -> ModelConfig:
    """A preset name, a trilogy ModelConfig .json file, or a checkpoint folder (its config.json)."""
    if spec in PRESETS:
        return ModelConfig.from_preset(spec)
    path = Path(spec)
    if path.is_dir():
        from ..convert import read_layout
        from ..convert.files import checkpoint_folder

        return read_layout(checkpoint_folder(path)).config
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error})") from None
        if "arch" in data:
            return ModelConfig.from_dict(data)
        from ..convert import hf

        return hf.config_from_hf(data)[0]
    raise ValueError(f"{spec!r} is not a preset ({', '.join(PRESETS)}), a config .json file or a checkpoint folder")


def human(count: float, unit: str = "") -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(count) >= factor:
            return f"{count / factor:.2f} {prefix}{unit}"
    return f"{count:.0f} {unit}".rstrip()


def mib(count: int) -> str:
    return f"{count / 2**20:,.2f} MiB" if count < 2**30 else f"{count / 2**30:,.2f} GiB"


def format_report(name: str, report: dict) -> str:
    work = report["workload"]
    shape = f"batch {work['batch']} x {work['seq']} tokens"
    if work["src"] is not None:
        shape = f"batch {work['batch']} x ({work['src']} source + {work['seq']} target) tokens"
    mode = "training step (AdamW)" if work["mode"] == "training" else "inference forward pass"
    lines = [f"{name} ({report['arch']}): {shape}, {work['dtype']}, {mode}, attention: {work['attention']}",
             f"parameters          {report['params']:,}"]
    lines += [f"  {key:34s}{count:>16,}" for key, count in report["params_breakdown"].items() if count]
    per_token = report["flops_per_token"]
    lines.append(f"FLOPs per token     forward {human(per_token['forward'], 'FLOP')}, "
                 f"training {human(per_token['training'], 'FLOP')}")
    lines.append(f"FLOPs per step      forward {human(report['flops_per_step']['forward'], 'FLOP')}, "
                 f"training {human(report['flops_per_step']['training'], 'FLOP')}")
    memory = report["memory_bytes"]
    lines.append("memory")
    labels = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer (AdamW moments)",
              "activations": "activations", "attention_maps": "attention maps (all layers, if kept)",
              "kv_cache_self": "KV cache, self-attention", "kv_cache_cross": "KV cache, cross-attention"}
    for key, label in labels.items():
        if memory[key] or key in ("weights", "activations"):
            lines.append(f"  {label:36s}{mib(memory[key]):>16s}")
    lines.append(f"  {'peak total':36s}{mib(memory['total']):>16s}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = config_from(args.model)
    report = size_report(config, args.batch, args.seq, args.src, args.dtype, not args.inference, args.attention)
    print(json.dumps(report, indent=2) if args.json else format_report(args.model, report))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("size", help="parameters, FLOPs per token and memory of a model",
                                   description=__doc__)
    parser.add_argument("model", help="a preset name, a config .json file or a checkpoint folder")
    parser.add_argument("--batch", type=int, default=1, help="sequences per step (default 1)")
    parser.add_argument("--seq", type=int, default=None, help="target tokens per sequence (default max_seq_len)")
    parser.add_argument("--src", type=int, default=None, help="source tokens, encoder-decoder (default --seq)")
    parser.add_argument("--dtype", choices=list(DTYPE_BYTES), default="fp32", help="weights and activations")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--training", action="store_true", help="a training step with AdamW (the default)")
    mode.add_argument("--inference", action="store_true", help="an inference forward pass, and the KV cache")
    parser.add_argument("--attention", choices=ATTENTION_PATHS, default="sdpa",
                        help="sdpa: a fused kernel (default); explicit: the (B, H, T, S) weights are materialised")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
