"""``trilogy presets``: its options, the table and the function that prints it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..config import PRESETS, ModelConfig
from ..models import build_model
from ..option_fields import option


@dataclass(kw_only=True)
class PresetsOptions:
    """How ``trilogy presets`` prints the table."""

    json: bool = option(False, "print JSON instead of a table")


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


def presets(options: PresetsOptions) -> int:
    """List the named model presets and their parameter counts.

    The counts are exact: each preset's model is built on the meta device and its parameters counted."""
    rows = preset_table()
    if options.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':20s} {'family':16s} {'layers':>6s} {'d_model':>7s} {'heads':>5s} {'params':>13s}")
    for r in rows:
        print(f"{r['name']:20s} {r['arch']:16s} {r['n_layers']:6d} {r['d_model']:7d} {r['n_heads']:5d} "
              f"{r['params']:13,d}")
    return 0
