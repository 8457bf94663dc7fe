"""``trilogy attention``: its options, the model it loads and the function it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import PRESETS
from ..errors import CheckpointNotFound
from ..models import TransformerModel
from ..option_fields import option
from ..viz.attention_maps import draw_all
from ..viz.explorer import VIEWS
from ..viz.page import write_page
from ..viz.show import collect


@dataclass(kw_only=True)
class AttentionOptions:
    """The model and text ``trilogy attention`` runs, and what it writes."""

    model: str = option(doc="a checkpoint folder or Hugging Face model name, or a preset name (random weights)",
                        positional=True)
    text: str = option(doc="the input text (the source for encoder-decoder); token ids if there is no tokenizer")
    target: str | None = option(None, "encoder-decoder: the decoder's text (default: greedy generation, 8 tokens)")
    generate: int | None = option(None, "decode N tokens greedily first and step through them on the page (not "
                                        "for encoders)", metavar="N")
    view: str = option("head", "the view the page opens on", choices=list(VIEWS))
    out: str = option(doc="folder for the PNGs and attention.html")
    no_png: bool = option(False, "write only attention.html")
    json: bool = option(False, "print what was written as JSON")


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


def attention(options: AttentionOptions) -> int:
    """Attention heatmaps and an interactive page for a text.

    Runs a checkpoint (or a preset, randomly initialised) on a text and writes its real attention weights as PNG
    heatmaps (one per kind and layer, a panel per head) and as ``attention.html``, one self-contained page to
    explore them: the explorer ``trilogy.viz.show`` displays in a notebook."""
    model = load(options.model)
    maps, generation = collect(model, options.text, options.target, options.generate)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(options.model).name if options.model not in PRESETS else f"{options.model} (random weights)"
    pngs = [] if options.no_png else draw_all(maps, out, f"{name}: ", progress=not options.json)
    page = write_page(maps, out / "attention.html", f"Attention of {name}", name, options.view, generation)
    summary: dict[str, Any] = {"page": str(page), "pngs": [str(p) for p in pngs],
               "kinds": {kind: {"layers": len(layers), "heads": layers[0].size(0),
                                "queries": maps.queries[kind], "keys": maps.keys[kind]}
                         for kind, layers in maps.weights.items()}}
    if options.json:
        print(json.dumps(summary, indent=2))
    else:
        for kind, info in summary["kinds"].items():
            print(f"{kind}: {info['layers']} layers x {info['heads']} heads, {len(info['queries'])} queries x "
                  f"{len(info['keys'])} keys")
        print(f"wrote {len(pngs)} PNG heatmaps and {page} (open it in a browser)")
    return 0
