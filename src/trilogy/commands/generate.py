"""``trilogy generate PATH --prompt TEXT``: continue a prompt (decoder-only) or answer it (encoder-decoder) with
a checkpoint and the tokenizer.json beside it, printing the text as it is decoded. PATH is a folder or a
Hugging Face model name ("OWNER/NAME", from the Hugging Face cache).

``--chat MESSAGE [--system TEXT]`` instead renders the conversation with the checkpoint's chat template (as
transformers' ``apply_chat_template`` does) and prints only the assistant's reply.

Greedy by default; sampling when ``--sample`` or any of ``--temperature``, ``--top-k``, ``--top-p`` is given;
beam search with ``--num-beams N`` (printed at the end: the best beam is only known then). Decoding stops at
the checkpoint's EOS token or after ``--max-new-tokens``."""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ..chat import messages_of
from ..cli import UserError
from ..convert import from_pretrained
from ..generate import generate, stream


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


def prompt_ids(model, args: argparse.Namespace) -> tuple[str, list[int]]:
    """The prompt text and its token ids: ``--prompt`` as given, or ``--chat`` through the chat template (whose
    text holds its special tokens already, so none are added)."""
    if args.chat is None:
        return args.prompt, model.tokenizer.encode(args.prompt).ids
    if model.chat_template is None:
        raise UserError(f"{args.path} has no chat template (chat_template.jinja, or chat_template in "
                        "tokenizer_config.json); use --prompt")
    text = model.chat_prompt(messages_of(args.chat, args.system))
    return text, model.tokenizer.encode(text, add_special_tokens=False).ids


def run(args: argparse.Namespace) -> int:
    if args.system is not None and args.chat is None:
        raise UserError("--system goes with --chat")
    model = from_pretrained(args.path)
    if model.tokenizer is None:
        raise UserError(f"{args.path} has no tokenizer.json: trilogy generate needs one to read the prompt")
    prompt, ids = prompt_ids(model, args)
    if not ids:
        raise UserError(f"the prompt {prompt!r} encodes to no tokens")
    input_ids = torch.tensor([ids])  # (1, T)
    options = _options(args)
    decoder_only = not model.structure.has_source
    echo = decoder_only and args.chat is None  # a continuation is printed after its prompt, a reply alone
    start = time.perf_counter()
    if args.json or args.num_beams > 1:
        output = generate(model, input_ids, **options)[0]
        new_ids = (output[input_ids.size(1):] if decoder_only else output[1:]).tolist()
        if not args.json:
            if echo:
                print(prompt, end="")
            print(model.tokenizer.decode(new_ids, skip_special_tokens=True))
    else:
        text, steps = TextStream(model.tokenizer), stream(model, input_ids, **options)  # checks the options
        if echo:
            print(prompt, end="", flush=True)
        new_ids = []
        for tokens in steps:
            new_ids.append(int(tokens[0]))
            print(text.push(new_ids[-1]), end="", flush=True)
        print()
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({
            "path": args.path, "prompt": prompt, "prompt_ids": ids, "new_ids": new_ids,
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
    parser.add_argument("path", help="checkpoint folder (config.json, the weights, tokenizer.json) or Hugging Face "
                                     "model name OWNER/NAME")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", help="the text to continue (or, for T5, to answer)")
    text.add_argument("--chat", metavar="MESSAGE", help="a user message, rendered with the checkpoint's chat "
                                                        "template; prints the assistant's reply")
    parser.add_argument("--system", help="a system prompt before the --chat message")
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
