"""``trilogy presets``: the named configurations and their exact parameter counts."""

from __future__ import annotations

import argparse
import json

import torch

from ..config import PRESETS, ModelConfig
from ..models import build_model


def preset_table() -> list[dict]:
    """One row per preset: family, sizes and the parameter count of the model built on the meta device."""
    rows = []
    for name in PRESETS:
        config = ModelConfig.from_preset(name)
        with torch.device("meta"):
            params = build_model(config).num_parameters()
        rows.append(dict(name=name, arch=config.arch, n_layers=config.n_layers, d_model=config.d_model,
                         n_heads=config.n_heads, d_ff=config.d_ff, vocab_size=config.vocab_size, params=params))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = preset_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':20s} {'family':16s} {'layers':>6s} {'d_model':>7s} {'heads':>5s} {'params':>13s}")
    for r in rows:
        print(f"{r['name']:20s} {r['arch']:16s} {r['n_layers']:6d} {r['d_model']:7d} {r['n_heads']:5d} "
              f"{r['params']:13,d}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("presets", help="list the named model presets and their parameter counts",
                                   description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
