"""``trilogy size``: its options and the function it runs, with the text report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import PRESETS, ModelConfig
from ..errors import TrilogyError
from ..option_fields import UserError, option
from ..sizing import ATTENTION_PATHS, PRECISIONS, size_report


@dataclass(kw_only=True)
class SizeOptions:
    """What ``trilogy size`` sizes, and how it prints it."""

    model: str = option(doc="a preset name, a config .json file, or a checkpoint folder or Hugging Face model name",
                        positional=True)
    batch: int = option(1, "sequences per step, over all ranks with --fsdp-shards")
    seq: int | None = option(None, "target tokens per sequence (default max_seq_len)")
    src: int | None = option(None, "source tokens, encoder-decoder (default --seq)")
    precision: str = option("fp32", "fp32, bf16, fp16: the weights themselves in that dtype; bf16-autocast: fp32 "
                                    "weights, gradients and AdamW state, matmuls in bf16 (what `trilogy train "
                                    "--precision bf16` runs)", aliases=("--dtype",), choices=list(PRECISIONS))
    training: bool = option(False, "a training step with AdamW (the default)", exclusive="mode")
    inference: bool = option(False, "an inference forward pass, and the KV cache", exclusive="mode")
    attention: str = option("sdpa", "sdpa: a fused kernel; math: SDPA's fallback, which keeps the (B, H, T, S) "
                                    "scores (on CPU with attention dropout); explicit: return_attention=True",
                            choices=list(ATTENTION_PATHS))
    checkpoint_activations: bool = option(False, "training: recompute each layer in backward, as `trilogy train "
                                                 "--checkpoint-activations`")
    fsdp_shards: int = option(1, "training: per-rank memory with FSDP over N ranks (`trilogy train --fsdp`)",
                              metavar="N")
    json: bool = option(False, "print JSON")

    def __post_init__(self) -> None:
        if self.training and self.inference:
            raise UserError("--training and --inference do not go together")


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


def size(options: SizeOptions) -> int:
    """Parameters, FLOPs per token and memory of a model.

    Of a preset, a config.json or a checkpoint folder, computed from the config alone (see ``trilogy.sizing``
    for what is counted and how it is checked).

    A training step is sized as ``trilogy train`` runs it (the LM/MLM loss fused with the head, in chunks), in
    the modes it offers: ``--checkpoint-activations``, ``--precision bf16-autocast`` (what ``trilogy train
    --precision bf16`` runs: fp32 weights, bf16 matmuls) and ``--fsdp-shards N`` (per-rank memory of FSDP over N
    ranks)."""
    config = config_from(options.model)
    report = size_report(config, options.batch, options.seq, options.src, options.precision, not options.inference,
                         options.attention, checkpointing=options.checkpoint_activations,
                         fsdp_shards=options.fsdp_shards)
    print(json.dumps(report, indent=2) if options.json else format_report(options.model, report))
    return 0
