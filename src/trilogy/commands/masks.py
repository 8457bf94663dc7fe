"""``trilogy masks``: its options and the function it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import TrilogyError
from ..models import build_model
from ..option_fields import option
from ..viz.mask_panels import draw_masks, family_masks, model_masks
from .size import config_from


@dataclass(kw_only=True)
class MasksOptions:
    """Whose masks ``trilogy masks`` draws, at which lengths, and where."""

    model: str | None = option(None, "draw one model's masks: a preset, config .json or checkpoint folder "
                                     "(default: a tiny model of each family)")
    seq: int = option(6, "target length")
    src: int | None = option(None, "T5 source length (default: --seq)")
    pad: int = option(2, "padding positions at the end of each row")
    out: str | None = option(None, "write the picture to this PNG file")
    json: bool = option(False, "print the matrices as JSON")


def masks(options: MasksOptions) -> int:
    """Draw the attention masks (BERT, GPT, the prefix LM, T5) exactly as the models build them.

    Without --out, prints them as text (# = may attend)."""
    if options.model is None:
        panels = family_masks(options.seq, options.src, options.pad)
    else:
        # the masks depend on the family and the position scheme, not on depth, vocabulary or weights
        config = config_from(options.model)
        if options.src is not None and not config.structure.has_source:
            raise TrilogyError(f"--src is for encoder-decoder models; this one is {config.arch!r}")
        model = build_model(config.replace(n_layers=1, vocab_size=64))
        panels = list(model_masks(model, options.seq, options.src, options.pad).values())
    if options.json:
        print(json.dumps([dict(title=p.title.replace("\n", ": "), queries=p.query_labels, keys=p.key_labels,
                               allowed=p.allowed.int().tolist()) for p in panels], indent=1))
    if options.out:
        draw_masks(panels, options.out)
        if not options.json:
            print(f"wrote {options.out}")
    elif not options.json:
        for p in panels:
            print(p.title.replace("\n", ": "))
            for label, row in zip(p.query_labels, p.allowed.tolist(), strict=True):
                print(f"  {label:>4s} " + " ".join("#" if a else "." for a in row))
    return 0
