"""``trilogy size``: parameters, FLOPs per token and memory of a preset, a config.json or a checkpoint folder,
computed from the config alone (see ``trilogy.sizing`` for what is counted and how it is checked).

A training step is sized as ``trilogy train`` runs it (the LM/MLM loss fused with the head, in chunks), in the
modes it offers: ``--checkpoint-activations``, ``--precision bf16-autocast`` (what ``trilogy train --precision
bf16`` runs: fp32 weights, bf16 matmuls) and ``--fsdp-shards N`` (per-rank memory of FSDP over N ranks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import PRESETS, ModelConfig
from ..errors import TrilogyError
from ..sizing import ATTENTION_PATHS, PRECISIONS, size_report


def config_from(spec: str) -> ModelConfig:
    """A preset name, a trilogy ModelConfig .json file, or a checkpoint folder or Hugging Face model name (its
    config.json)."""
    if spec in PRESETS:
        return ModelConfig.from_preset(spec)
    path = Path(spec)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise TrilogyError(f"{path} is not JSON ({error})") from None
        if "arch" in data:
            return ModelConfig.from_dict(data)
        from ..convert import hf

        return hf.config_from_hf(data)[0]
    from ..convert import read_layout
    from ..convert.hub import resolve

    try:
        return read_layout(resolve(spec)).config
    except FileNotFoundError as error:
        raise TrilogyError(f"{error}; nor is it a preset ({', '.join(PRESETS)}) or a config .json file") from None


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
    lines = [f"{name} ({report['arch']}): {shape}, {describe_modes(work)}", f"parameters          {report['params']:,}"]
    lines += [f"  {key:34s}{count:>16,}" for key, count in report["params_breakdown"].items() if count]
    per_token = report["flops_per_token"]
    lines.append(f"FLOPs per token     forward {human(per_token['forward'], 'FLOP')}, "
                 f"training {human(per_token['training'], 'FLOP')}")
    lines.append(f"FLOPs per step      forward {human(report['flops_per_step']['forward'], 'FLOP')}, "
                 f"training {human(report['flops_per_step']['training'], 'FLOP')}")
    memory = report["memory_bytes"]
    lines.append("memory" + (f" per rank (of {work['fsdp_shards']})" if work["fsdp_shards"] > 1 else ""))
    labels = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer (AdamW moments)",
              "activations": "activations", "recompute": "one layer recomputed in backward",
              "loss_chunk": "fused loss, one chunk's temporaries", "autocast_weights": "autocast's bf16 weight copies",
              "gathered_weights": "FSDP: gathered root + 2 layers", "gathered_gradients": "FSDP: unsharded gradients",
              "attention_maps": "attention maps (all layers, if kept)",
              "kv_cache_self": "KV cache, self-attention", "kv_cache_cross": "KV cache, cross-attention"}
    for key, label in labels.items():
        if memory[key] or key in ("weights", "activations"):
            lines.append(f"  {label:36s}{mib(memory[key]):>16s}")
    lines.append(f"  {'peak total':36s}{mib(memory['total']):>16s}")
    return "\n".join(lines)


def describe_modes(work: dict) -> str:
    """One line of the workload's modes: precision, step, attention, checkpointing, FSDP."""
    precision = {"bf16-autocast": "bf16 autocast (fp32 weights)"}.get(work["precision"], f"{work['precision']} weights")
    if work["mode"] != "training":
        return f"{precision}, inference forward pass, attention: {work['attention']}"
    parts = [precision, "training step (AdamW)", f"attention: {work['attention']}"]
    if work["labelled_rows"] is not None:
        parts.append(f"fused loss over {work['labelled_rows']:,} labelled rows")
    if work["checkpointing"]:
        parts.append("activation checkpointing")
    if work["fsdp_shards"] > 1:
        parts.append(f"FSDP over {work['fsdp_shards']} ranks (batch {work['batch_per_rank']} per rank)")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    config = config_from(args.model)
    report = size_report(config, args.batch, args.seq, args.src, args.precision, not args.inference, args.attention,
                         checkpointing=args.checkpoint_activations, fsdp_shards=args.fsdp_shards)
    print(json.dumps(report, indent=2) if args.json else format_report(args.model, report))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("size", help="parameters, FLOPs per token and memory of a model",
                                   description=__doc__)
    parser.add_argument("model", help="a preset name, a config .json file, or a checkpoint folder or Hugging Face "
                                      "model name")
    parser.add_argument("--batch", type=int, default=1,
                        help="sequences per step, over all ranks with --fsdp-shards (default 1)")
    parser.add_argument("--seq", type=int, default=None, help="target tokens per sequence (default max_seq_len)")
    parser.add_argument("--src", type=int, default=None, help="source tokens, encoder-decoder (default --seq)")
    parser.add_argument("--precision", "--dtype", choices=list(PRECISIONS), default="fp32",
                        help="fp32 (default); bf16-autocast: fp32 weights, gradients and AdamW state, matmuls in "
                             "bf16 (what `trilogy train --precision bf16` runs); bf16, fp16: the weights themselves "
                             "in that dtype")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--training", action="store_true", help="a training step with AdamW (the default)")
    mode.add_argument("--inference", action="store_true", help="an inference forward pass, and the KV cache")
    parser.add_argument("--attention", choices=ATTENTION_PATHS, default="sdpa",
                        help="sdpa: a fused kernel (default); math: SDPA's fallback, which keeps the (B, H, T, S) "
                             "scores (on CPU with attention dropout); explicit: return_attention=True")
    parser.add_argument("--checkpoint-activations", action="store_true",
                        help="training: recompute each layer in backward, as `trilogy train --checkpoint-activations`")
    parser.add_argument("--fsdp-shards", type=int, default=1, metavar="N",
                        help="training: per-rank memory with FSDP over N ranks (`trilogy train --fsdp`)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
