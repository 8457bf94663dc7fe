"""``trilogy info``: its options and the function it runs, with the text summary."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..convert.summary import summarize
from ..option_fields import option


@dataclass(kw_only=True)
class InfoOptions:
    """Which checkpoint ``trilogy info`` describes, and how it prints it."""

    path: str = option(doc="checkpoint folder holding config.json and the weights, or a Hugging Face model name "
                           "OWNER/NAME (from the Hugging Face cache)", positional=True)
    json: bool = option(False, "print JSON instead of a table")


def format_summary(info: dict) -> str:
    layers = str(info["n_layers"])
    if info["n_decoder_layers"] is not None:
        layers = f"{info['n_layers']} encoder + {info['n_decoder_layers']} decoder"
    heads = str(info["n_heads"])
    if info["n_kv_heads"] != info["n_heads"]:
        heads += f" ({info['n_kv_heads']} key/value heads)"
    head = info["head"] + (" (tied to the embeddings)" if info["tied_head"] else "")
    mlp = ("gated " if info["gated_mlp"] else "") + info["activation"]
    weights = (f"{info['weights_file']}: {info['stored_tensors']} tensors, {info['stored_elements']:,} values, "
               f"{'/'.join(info['dtypes'])}")
    rows = [
        ("checkpoint", info["path"]),
        ("format", "Hugging Face" if info["format"] == "huggingface" else
         "trilogy's own (Hugging Face transformers cannot load it)"),
        ("model type", info["model_type"]),
        ("architecture", info["architecture"]),
        ("family", info["family"]),
        ("layers", layers),
        ("d_model", str(info["d_model"])),
        ("heads", f"{heads}, d_head {info['d_head']}"),
        ("d_ff", f"{info['d_ff']} ({mlp})"),
        ("vocab", str(info["vocab_size"])),
        ("positions", info["position"] + (f", up to {info['max_seq_len']}"
                                          if info["position"] in ("learned", "sinusoidal") else "")),
        ("norm", f"{info['norm']}, {info['norm_position']}-norm"),
        ("head", head),
        *([("options", ", ".join(f"{name}={value}" for name, value in info["block_options"].items()))]
          if info["block_options"] else []),
        ("parameters", f"{info['parameters']:,}"),
        ("weights", weights),
        ("match", "the weights match config.json" if info["weights_match_config"] else info["problem"]),
        ("tokenizer", f"tokenizer.json, vocab {info['tokenizer_vocab_size']}"
         if info["tokenizer_vocab_size"] is not None else "none"),
    ]
    return "\n".join(f"{name:13s}{value}" for name, value in rows)


def info(options: InfoOptions) -> int:
    """Describe a checkpoint folder: family, sizes, parameter count.

    Family, architecture, sizes and parameter count of a checkpoint folder (Hugging Face or trilogy format) or
    Hugging Face model name, and whether its weights match its config.json. Exit status 1 when they do not."""
    summary = summarize(options.path)
    print(json.dumps(summary, indent=2) if options.json else format_summary(summary))
    return 0 if summary["weights_match_config"] else 1
