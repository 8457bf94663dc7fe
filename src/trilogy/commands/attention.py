"""``trilogy attention``: run a checkpoint (or a preset, randomly initialised) on a text and write its real
attention weights as PNG heatmaps (one per kind and layer, a panel per head) and as ``attention.html``, one
self-contained page to explore them: the explorer ``trilogy.viz.show`` displays in a notebook."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..config import PRESETS
from ..errors import CheckpointNotFound
from ..models import TransformerModel
from ..viz.attention_maps import draw_all
from ..viz.explorer import VIEWS
from ..viz.page import write_page
from ..viz.show import collect


def load(spec: str, seed: int = 0) -> TransformerModel:
    """A checkpoint (folder or Hugging Face model name) through ``trilogy.from_pretrained``, or a preset built
    with random weights."""
    if spec in PRESETS:
        from .. import build

        torch.manual_seed(seed)
        return build(spec)
    from ..convert import from_pretrained

    try:
        return from_pretrained(spec)
    except FileNotFoundError as error:
        raise CheckpointNotFound(f"{error}; nor is it a preset ({', '.join(PRESETS)})") from None


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    maps, generation = collect(model, args.text, args.target, args.generate)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.model).name if args.model not in PRESETS else f"{args.model} (random weights)"
    pngs = [] if args.no_png else draw_all(maps, out, f"{name}: ", progress=not args.json)
    page = write_page(maps, out / "attention.html", f"Attention of {name}", name, args.view, generation)
    summary: dict[str, Any] = {"page": str(page), "pngs": [str(p) for p in pngs],
               "kinds": {kind: {"layers": len(layers), "heads": layers[0].size(0),
                                "queries": maps.queries[kind], "keys": maps.keys[kind]}
                         for kind, layers in maps.weights.items()}}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for kind, info in summary["kinds"].items():
            print(f"{kind}: {info['layers']} layers x {info['heads']} heads, {len(info['queries'])} queries x "
                  f"{len(info['keys'])} keys")
        print(f"wrote {len(pngs)} PNG heatmaps and {page} (open it in a browser)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("attention", help="attention heatmaps and an interactive page for a text",
                                   description=__doc__)
    parser.add_argument("model", help="a checkpoint folder or Hugging Face model name, or a preset name (random "
                                      "weights)")
    parser.add_argument("--text", required=True,
                        help="the input text (the source for encoder-decoder); token ids if there is no tokenizer")
    parser.add_argument("--target", help="encoder-decoder: the decoder's text (default: greedy generation, 8 tokens)")
    parser.add_argument("--generate", type=int, metavar="N",
                        help="decode N tokens greedily first and step through them on the page (not for encoders)")
    parser.add_argument("--view", choices=VIEWS, default="head", help="the view the page opens on (default head)")
    parser.add_argument("--out", required=True, help="folder for the PNGs and attention.html")
    parser.add_argument("--no-png", action="store_true", help="write only attention.html")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    parser.set_defaults(func=run)
