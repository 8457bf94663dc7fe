"""``trilogy generate``: its options and the function it runs, printing the text as it is decoded."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..chat import messages_of
from ..convert import from_pretrained
from ..generate import generate as decode
from ..generate import stream
from ..option_fields import UserError, option
from ..quantize import prepack


@dataclass(kw_only=True)
class GenerateOptions:
    """The checkpoint ``trilogy generate`` runs, the prompt it reads and how it decodes."""

    path: str = option(doc="checkpoint folder (config.json, the weights, tokenizer.json) or Hugging Face model name "
                           "OWNER/NAME", positional=True)
    prompt: str | None = option(None, "the text to continue (or, for T5, to answer)", exclusive="text",
                                required=True)
    chat: str | None = option(None, "a user message, rendered with the checkpoint's chat template; prints the "
                                    "assistant's reply", metavar="MESSAGE", exclusive="text", required=True)
    system: str | None = option(None, "a system prompt before the --chat message")
    max_new_tokens: int = option(20, "at most this many new tokens")
    sample: bool = option(False, "sample instead of taking the most likely token")
    temperature: float | None = option(None, "sampling temperature > 0 (implies --sample)")
    top_k: int | None = option(None, "sample among the k most likely tokens (implies --sample)")
    top_p: float | None = option(None, "sample within probability mass p (implies --sample)")
    repetition_penalty: float = option(1.0, "> 1 discourages repeats")
    num_beams: int = option(1, "beam search with this many beams; 1 turns it off")
    seed: int | None = option(None, "seed of the sampler, for reproducible samples")
    quantize: str | None = option(None, "decode from int8 or int4 weights (CPU; see trilogy.quantize)",
                                  choices=("int8", "int4"))
    compile: bool = option(False, "decode with a compiled step (torch.compile; the first run compiles, about a "
                                  "minute for a 135M model)")
    json: bool = option(False, "print one JSON object at the end instead")

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.chat is None):
            raise UserError("give one of --prompt and --chat")
        if self.system is not None and self.chat is None:
            raise UserError("--system goes with --chat")


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


def decoding_options(options: GenerateOptions) -> dict[str, Any]:
    """The keyword arguments of ``trilogy.generate.generate`` and ``stream``: sampling when ``--sample`` or any
    sampling option is given."""
    sample = options.sample or any(v is not None for v in (options.temperature, options.top_k, options.top_p))
    kwargs: dict[str, Any] = dict(max_new_tokens=options.max_new_tokens, do_sample=sample,
                                  num_beams=options.num_beams, repetition_penalty=options.repetition_penalty,
                                  seed=options.seed, compile=options.compile)
    for name in ("temperature", "top_k", "top_p"):
        if getattr(options, name) is not None:
            kwargs[name] = getattr(options, name)
    return kwargs


def prompt_ids(model, options: GenerateOptions) -> tuple[str, list[int]]:
    """The prompt text and its token ids: ``--prompt`` as given, or ``--chat`` through the chat template (whose
    text holds its special tokens already, so none are added)."""
    if options.prompt is not None:
        return options.prompt, model.tokenizer.encode(options.prompt).ids
    if model.chat_template is None:
        raise UserError(f"{options.path} has no chat template (chat_template.jinja, or chat_template in "
                        "tokenizer_config.json); use --prompt")
    text = model.chat_prompt(messages_of(options.chat, options.system))
    return text, model.tokenizer.encode(text, add_special_tokens=False).ids


def generate(options: GenerateOptions) -> int:
    """Generate text from a checkpoint folder and its tokenizer.

    Continues a prompt (decoder-only) or answers it (encoder-decoder) with a checkpoint and the tokenizer.json
    beside it, printing the text as it is decoded. PATH is a folder or a Hugging Face model name
    ("OWNER/NAME", from the Hugging Face cache).

    ``--chat MESSAGE [--system TEXT]`` instead renders the conversation with the checkpoint's chat template (as
    transformers' ``apply_chat_template`` does) and prints only the assistant's reply.

    Greedy by default; sampling when ``--sample`` or any of ``--temperature``, ``--top-k``, ``--top-p`` is
    given; beam search with ``--num-beams N`` (printed at the end: the best beam is only known then). Decoding
    stops at the checkpoint's EOS token or after ``--max-new-tokens``. The weights are prepacked for oneDNN
    (``trilogy.prepack``), or with ``--quantize int8|int4`` stored in 8 or 4 bits (``trilogy.quantize``)."""
    model = from_pretrained(options.path, quantize=options.quantize)
    if options.quantize is None and not options.compile and torch.backends.mkldnn.is_available():
        prepack(model)  # the same numbers up to rounding, faster one-row products (a compiled step packs its own)
    if model.tokenizer is None:
        raise UserError(f"{options.path} has no tokenizer.json: trilogy generate needs one to read the prompt")
    prompt, ids = prompt_ids(model, options)
    if not ids:
        raise UserError(f"the prompt {prompt!r} encodes to no tokens")
    input_ids = torch.tensor([ids])  # (1, T)
    kwargs = decoding_options(options)
    decoder_only = not model.structure.has_source
    echo = decoder_only and options.chat is None  # a continuation is printed after its prompt, a reply alone
    start = time.perf_counter()
    if options.json or options.num_beams > 1:
        output = decode(model, input_ids, **kwargs)[0]
        new_ids = (output[input_ids.size(1):] if decoder_only else output[1:]).tolist()
        if not options.json:
            if echo:
                print(prompt, end="")
            print(model.tokenizer.decode(new_ids, skip_special_tokens=True))
    else:
        text, steps = TextStream(model.tokenizer), stream(model, input_ids, **kwargs)  # checks them
        if echo:
            print(prompt, end="", flush=True)
        new_ids = []
        for tokens in steps:
            new_ids.append(int(tokens[0]))
            print(text.push(new_ids[-1]), end="", flush=True)
        print()
    seconds = time.perf_counter() - start
    if options.json:
        print(json.dumps({
            "path": options.path, "prompt": prompt, "prompt_ids": ids, "new_ids": new_ids,
            "text": model.tokenizer.decode(new_ids, skip_special_tokens=True),
            "seconds": seconds, "tokens_per_second": len(new_ids) / seconds if seconds > 0 else None,
            "options": kwargs, "quantize": options.quantize,
        }, indent=2))
    else:
        print(f"[{len(new_ids)} new tokens in {seconds:.2f} s, {len(new_ids) / seconds:.1f} tokens/s]",
              file=sys.stderr)
    return 0
