"""``trilogy masks``: draw the attention masks of the three families exactly as the models build them."""

from __future__ import annotations

import argparse
import json

from ..errors import TrilogyError
from ..models import build_model
from ..viz.mask_panels import draw_masks, family_masks, model_masks
from .size import config_from


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        panels = family_masks(args.seq, args.src, args.pad)
    else:
        # the masks depend on the family and the position scheme, not on depth, vocabulary or weights
        config = config_from(args.model)
        if args.src is not None and not config.structure.has_source:
            raise TrilogyError(f"--src is for encoder-decoder models; this one is {config.arch!r}")
        model = build_model(config.replace(n_layers=1, vocab_size=64))
        panels = list(model_masks(model, args.seq, args.src, args.pad).values())
    if args.json:
        print(json.dumps([dict(title=p.title.replace("\n", ": "), queries=p.query_labels, keys=p.key_labels,
                               allowed=p.allowed.int().tolist()) for p in panels], indent=1))
    if args.out:
        draw_masks(panels, args.out)
        if not args.json:
            print(f"wrote {args.out}")
    elif not args.json:
        for p in panels:
            print(p.title.replace("\n", ": "))
            for label, row in zip(p.query_labels, p.allowed.tolist(), strict=True):
                print(f"  {label:>4s} " + " ".join("#" if a else "." for a in row))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "masks", help="draw the attention masks (BERT, GPT, T5) exactly as the models build them",
        description=__doc__ + " Without --out, prints them as text (# = may attend).")
    parser.add_argument("--model", help="draw one model's masks: a preset, config .json or checkpoint folder "
                                        "(default: a tiny model of each family)")
    parser.add_argument("--seq", type=int, default=6, help="target length (default 6)")
    parser.add_argument("--src", type=int, default=None, help="T5 source length (default: --seq)")
    parser.add_argument("--pad", type=int, default=2, help="padding positions at the end of each row (default 2)")
    parser.add_argument("--out", help="write the picture to this PNG file")
    parser.add_argument("--json", action="store_true", help="print the matrices as JSON")
    parser.set_defaults(func=run)
