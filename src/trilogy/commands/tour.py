"""``trilogy tour``: its options, the rows it measures and the function that prints them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

from ..config import TINY_PRESETS, ModelConfig
from ..generate import generate_text
from ..models import build_model
from ..option_fields import option


@dataclass(kw_only=True)
class TourOptions:
    """The seed and length of ``trilogy tour``'s run, and how it prints it."""

    seed: int = option(0, "random seed")
    new_tokens: int = option(8, "tokens to decode")
    json: bool = option(False, "print JSON instead of text")


def tour_rows(seed: int = 0, new_tokens: int = 8) -> list[dict]:
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


def tour(options: TourOptions) -> int:
    """Build the three families and run them once.

    Prints each one's size and the output of one forward pass, and decodes a few tokens with the decoder."""
    rows = tour_rows(options.seed, options.new_tokens)
    if options.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['arch']:16s} {row['preset']:10s} {row['params']:9,d} params  "
              f"output {tuple(row['output_shape'])}  {row['forward_ms']:.1f} ms")
        if "decoded" in row:
            print(f"{'':16s} greedy decoding with the KV cache: {row['decoded']}")
    return 0
