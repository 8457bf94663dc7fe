"""``trilogy tour``: build the three families, print their sizes, run them once and decode a few tokens."""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..config import TINY_PRESETS, ModelConfig
from ..generate import generate_text
from ..models import build_model


def tour(seed: int = 0, new_tokens: int = 8) -> list[dict]:
    """One row per family: preset, parameters, output shape of one forward pass, and for the decoder the
    tokens decoded greedily (random weights: the point is the mechanics, not the text)."""
    torch.manual_seed(seed)
    rows = []
    ids = torch.randint(3, 1000, (2, 12))
    for arch, preset in TINY_PRESETS.items():
        model = build_model(ModelConfig.from_preset(preset)).eval()
        start = time.perf_counter()
        with torch.no_grad():
            out = model(ids, ids[:, :5]) if model.structure.has_source else model(ids)
        row = dict(arch=arch, preset=preset, params=model.num_parameters(), output_shape=list(out.shape),
                   forward_ms=round(1000 * (time.perf_counter() - start), 2))
        if model.structure.generates:
            row["decoded"] = generate_text(model, ids[:1, :4], max_length=4 + new_tokens)[0].tolist()
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    rows = tour(args.seed, args.new_tokens)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['arch']:16s} {row['preset']:10s} {row['params']:9,d} params  "
              f"output {tuple(row['output_shape'])}  {row['forward_ms']:.1f} ms")
        if "decoded" in row:
            print(f"{'':16s} greedy decoding with the KV cache: {row['decoded']}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("tour", help="build the three families and run them once", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens to decode (default 8)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)
