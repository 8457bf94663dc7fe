"""``trilogy compare``: the three families side by side, the notebook's table corrected, with parameters,
FLOPs per token and memory of an equal-size configuration of each, and (``--measure``) training and
generation speed measured on this machine."""

from __future__ import annotations

import argparse
import json

from ..analysis import compare_architectures, format_comparison
from ..errors import TrilogyError


def run(args: argparse.Namespace) -> int:
    for name in ("batch", "seq", "d_model", "heads", "d_ff"):
        if getattr(args, name) <= 0:
            raise TrilogyError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    result = compare_architectures(measure=args.measure, batch=args.batch, seq=args.seq, show=False,
                                   d_model=args.d_model, n_heads=args.heads, d_ff=args.d_ff, n_layers=args.layers)
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="the three families side by side, computed and measured",
                                   description=__doc__)
    parser.add_argument("--measure", action="store_true", help="also measure training and generation tokens/s")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--d-model", type=int, default=256, help="width of the equal-size configs (default 256)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--d-ff", type=int, default=1024, help="MLP width (default 1024)")
    parser.add_argument("--layers", type=int, default=4,
                        help="layers of the encoder and of the decoder; the encoder-decoder gets half per side "
                             "(default 4)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
