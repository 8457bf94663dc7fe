"""``trilogy info PATH``: family, architecture, sizes and parameter count of a checkpoint folder (Hugging Face
or trilogy format) or Hugging Face model name, and whether its weights match its config.json. Exit status 1
when they do not."""

from __future__ import annotations

import argparse
import json

from ..convert.summary import summarize


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
        ("parameters", f"{info['parameters']:,}"),
        ("weights", weights),
        ("match", "the weights match config.json" if info["weights_match_config"] else info["problem"]),
        ("tokenizer", f"tokenizer.json, vocab {info['tokenizer_vocab_size']}"
         if info["tokenizer_vocab_size"] is not None else "none"),
    ]
    return "\n".join(f"{name:13s}{value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    info = summarize(args.path)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0 if info["weights_match_config"] else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="describe a checkpoint folder: family, sizes, parameter count",
                                   description=__doc__)
    parser.add_argument("path", help="checkpoint folder holding config.json and the weights, or a Hugging Face "
                                     "model name OWNER/NAME (from the Hugging Face cache)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
