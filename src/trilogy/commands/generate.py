"""``trilogy generate PATH --prompt TEXT``: continue a prompt (decoder-only) or answer it (encoder-decoder) with
a checkpoint and the tokenizer.json beside it, printing the text as it is decoded.

Greedy by default; sampling when ``--sample`` or any of ``--temperature``, ``--top-k``, ``--top-p`` is given;
beam search with ``--num-beams N`` (printed at the end: the best beam is only known then). Decoding stops at
the checkpoint's EOS token or after ``--max-new-tokens``."""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ..cli import UserError
from ..convert import from_pretrained
from ..generate import generate, stream
from ..models import EncoderDecoderTransformer


class TextStream:
    """Turns a growing list of token ids into the text to print next. Decoding the whole list each time keeps
    multi-token characters intact: text ending in an unfinished UTF-8 sequence is held back."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.printed = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self.printed):
            return ""
        new, self.printed = text[len(self.printed):], text
        return new


def _options(args: argparse.Namespace) -> dict:
    sample = args.sample or any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    options = dict(max_new_tokens=args.max_new_tokens, do_sample=sample, num_beams=args.num_beams,
                   repetition_penalty=args.repetition_penalty, seed=args.seed)
    for name in ("temperature", "top_k", "top_p"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def run(args: argparse.Namespace) -> int:
    model = from_pretrained(args.path)
    if model.tokenizer is None:
        raise UserError(f"{args.path} has no tokenizer.json: trilogy generate needs one to read the prompt")
    prompt_ids = model.tokenizer.encode(args.prompt).ids
    if not prompt_ids:
        raise UserError(f"the prompt {args.prompt!r} encodes to no tokens")
    input_ids = torch.tensor([prompt_ids])  # (1, T)
    options = _options(args)
    decoder_only = not isinstance(model, EncoderDecoderTransformer)
    start = time.perf_counter()
    if args.json or args.num_beams > 1:
        output = generate(model, input_ids, **options)[0]
        new_ids = (output[input_ids.size(1):] if decoder_only else output[1:]).tolist()
        if not args.json:
            if decoder_only:
                print(args.prompt, end="")
            print(model.tokenizer.decode(new_ids, skip_special_tokens=True))
    else:
        text, steps = TextStream(model.tokenizer), stream(model, input_ids, **options)  # checks the options
        if decoder_only:
            print(args.prompt, end="", flush=True)
        new_ids = []
        for tokens in steps:
            new_ids.append(int(tokens[0]))
            print(text.push(new_ids[-1]), end="", flush=True)
        print()
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({
            "path": args.path, "prompt": args.prompt, "prompt_ids": prompt_ids, "new_ids": new_ids,
            "text": model.tokenizer.decode(new_ids, skip_special_tokens=True),
            "seconds": seconds, "tokens_per_second": len(new_ids) / seconds if seconds > 0 else None,
            "options": options,
        }, indent=2))
    else:
        print(f"[{len(new_ids)} new tokens in {seconds:.2f} s, {len(new_ids) / seconds:.1f} tokens/s]",
              file=sys.stderr)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate text from a checkpoint folder and its tokenizer",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="checkpoint folder: config.json, the weights and tokenizer.json")
    parser.add_argument("--prompt", required=True, help="the text to continue (or, for T5, to answer)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="at most this many new tokens (20)")
    parser.add_argument("--sample", action="store_true", help="sample instead of taking the most likely token")
    parser.add_argument("--temperature", type=float, help="sampling temperature > 0 (implies --sample)")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens (implies --sample)")
    parser.add_argument("--top-p", type=float, help="sample within probability mass p (implies --sample)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (1.0)")
    parser.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (1: off)")
    parser.add_argument("--seed", type=int, help="seed of the sampler, for reproducible samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end instead")
    parser.set_defaults(func=run)
