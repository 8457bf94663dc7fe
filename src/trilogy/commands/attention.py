"""``trilogy attention``: run a checkpoint (or a preset, randomly initialised) on a text and write its real
attention weights as PNG heatmaps (one per kind and layer, a panel per head) and as ``attention.html``, one
self-contained page to explore them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..config import PRESETS
from ..errors import TrilogyError
from ..models import TransformerModel
from ..viz.attention import attention_maps, draw_all
from ..viz.page import write_page


def load(spec: str, seed: int = 0) -> TransformerModel:
    """A checkpoint folder through ``trilogy.from_pretrained``, or a preset built with random weights."""
    if spec in PRESETS:
        from .. import build

        torch.manual_seed(seed)
        return build(spec)
    if not Path(spec).exists():
        raise TrilogyError(f"{spec!r} is neither a checkpoint folder nor a preset ({', '.join(PRESETS)})")
    from ..convert import from_pretrained

    return from_pretrained(spec)


def tokenize(model: TransformerModel, text: str, what: str) -> tuple[list[int], list[str]]:
    """Token ids and labels: with the checkpoint's tokenizer.json when it has one, else ``text`` must be the
    token ids themselves, separated by spaces."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        encoding = tokenizer.encode(text)
        ids = list(encoding.ids)
        # the piece of the text each token covers reads better than byte-level names like "Ġlight"
        labels = [text[start:end].strip() or token if end > start else token
                  for (start, end), token in zip(encoding.offsets, encoding.tokens, strict=True)]
    else:
        try:
            ids = [int(word) for word in text.split()]
        except ValueError:
            raise TrilogyError(f"this model has no tokenizer.json, so {what} must be token ids separated by spaces "
                               f"(e.g. '5 17 42'), got {text!r}") from None
        labels = [str(i) for i in ids]
    if not ids:
        raise TrilogyError(f"{what} gives no tokens")
    return ids, labels


def label(model: TransformerModel, token_id: int) -> str:
    tokenizer = getattr(model, "tokenizer", None)
    return (tokenizer.id_to_token(token_id) if tokenizer is not None else None) or str(token_id)


def decoder_input(model: TransformerModel, source: torch.Tensor, target: str | None
                  ) -> tuple[torch.Tensor, list[str]]:
    """The decoder's input for an encoder-decoder: the start token then the target text, or, without
    ``--target``, what the model generates greedily (8 tokens)."""
    start = model.config.decoder_start_token_id
    start = start if start is not None else (model.config.pad_token_id or 0)
    if target is None:
        ids = model.generate(source, max_new_tokens=8)[0].tolist()
    else:
        ids = [start] + tokenize(model, target, "--target")[0]
    return torch.tensor([ids]), [label(model, i) for i in ids]


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    if args.target is not None and model.config.arch != "encoder-decoder":
        raise TrilogyError(f"--target is for encoder-decoder models; this one is {model.config.arch!r}")
    ids, labels = tokenize(model, args.text, "--text")
    source = torch.tensor([ids])
    target_ids, target_labels = (decoder_input(model, source, args.target)
                                 if model.config.arch == "encoder-decoder" else (None, None))
    maps = attention_maps(model, source, labels, target_ids, target_labels)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.model).name if args.model not in PRESETS else f"{args.model} (random weights)"
    pngs = [] if args.no_png else draw_all(maps, out, f"{name}: ", progress=not args.json)
    page = write_page(maps, out / "attention.html", f"Attention of {name}", name)
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
    parser.add_argument("model", help="a checkpoint folder, or a preset name (random weights)")
    parser.add_argument("--text", required=True,
                        help="the input text (the source for encoder-decoder); token ids if there is no tokenizer")
    parser.add_argument("--target", help="encoder-decoder: the decoder's text (default: greedy generation)")
    parser.add_argument("--out", required=True, help="folder for the PNGs and attention.html")
    parser.add_argument("--no-png", action="store_true", help="write only attention.html")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    parser.set_defaults(func=run)
