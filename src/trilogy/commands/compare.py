"""``trilogy compare``: its options and the function it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..analysis import compare_architectures, format_comparison
from ..errors import TrilogyError
from ..option_fields import option


@dataclass(kw_only=True)
class CompareOptions:
    """The equal-size configuration ``trilogy compare`` builds of each family, and what it measures."""

    measure: bool = option(False, "also measure training and generation tokens/s")
    batch: int = option(8, "sequences per step")
    seq: int = option(128, "tokens per sequence")
    d_model: int = option(256, "width of the equal-size configs")
    heads: int = option(4, "attention heads")
    d_ff: int = option(1024, "MLP width")
    layers: int = option(4, "layers of the encoder and of the decoder; the encoder-decoder gets half per side")
    evidence: str | None = option(None, "a report.json of trilogy demo: add its measured task x architecture "
                                        "rows, with the notebook's claim and whether they agree", metavar="REPORT")
    json: bool = option(False, "print JSON")

    def __post_init__(self) -> None:
        for name in ("batch", "seq", "d_model", "heads", "d_ff"):
            if getattr(self, name) <= 0:
                raise TrilogyError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


def compare(options: CompareOptions) -> int:
    """The three families side by side, computed and measured.

    The notebook's table corrected, with parameters, FLOPs per token and memory of an equal-size configuration
    of each, (``--measure``) training and generation speed measured on this machine, and (``--evidence``) the
    task x architecture matrix a ``trilogy demo`` report measured."""
    result = compare_architectures(measure=options.measure, batch=options.batch, seq=options.seq, show=False,
                                   evidence=options.evidence, d_model=options.d_model, n_heads=options.heads,
                                   d_ff=options.d_ff, n_layers=options.layers)
    print(json.dumps(result, indent=2) if options.json else format_comparison(result))
    return 0
