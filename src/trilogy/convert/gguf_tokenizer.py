"""A GGUF file's tokenizer, rebuilt from its metadata as a ``tokenizers.Tokenizer``, and its chat template.

A GGUF holds no tokenizer.json. llama.cpp stores the vocabulary (``tokenizer.ggml.tokens``, with a type per token
and, for SentencePiece vocabularies, a score), the merges of byte-level BPE vocabularies, the special token ids
and flags, and the name of the pre-tokenizer (``tokenizer.ggml.pre``: how text is split before BPE). Two tokenizer
models are rebuilt, as transformers' GGUF loader rebuilds them (the reference the tests compare ids with):

- ``gpt2``: byte-level BPE (Llama 3, Qwen2/Qwen3, Mistral Nemo's "tekken"), split by the regex ``pre`` names;
- ``llama``: SentencePiece BPE (Llama 1/2, Mistral 7B, Phi-3, Gemma) with byte fallback and a "▁" for each
  space. The file lists no merges; they follow from the scores: a pair merges with the priority of the token it
  makes. Two architectures differ, as transformers rebuilds them: Gemma's tokens of spaces are stored with real
  spaces, and its merges follow the tokens' order in the file, not their scores; Phi-3 prefixes its "▁" in a
  normalizer, so a text starting with a space gets one more.

Control tokens (``<|im_start|>``, ``<s>``) and the bos/eos/unk/pad tokens are special added tokens, matched whole
in any text; user-defined ones (``<think>``) are added tokens that are not special.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..chat import ChatTemplate
from ..errors import CheckpointError

CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values (gguf.TokenType)
#: ChatTemplate's special-token names -> the metadata key holding each one's id
SPECIAL_IDS = {"bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id",
               "unk_token": "tokenizer.ggml.unknown_token_id", "pad_token": "tokenizer.ggml.padding_token_id"}

_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
           r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
#: tokenizer.ggml.pre -> the regex that splits text before byte-level BPE (None: GPT-2's own, as transformers
#: reads a file without one or with llama.cpp's "default")
PRE_TOKENIZERS: dict[str | None, str | None] = {
    None: None, "default": None, "gpt2": None,
    "llama-bpe": _LLAMA3, "llama3": _LLAMA3, "llama-v3": _LLAMA3, "smaug-bpe": _LLAMA3,
    "qwen2": _QWEN2, "deepseek-r1-qwen": _QWEN2,
    "tekken": _TEKKEN,
}


def tokenizer_from_gguf(metadata: dict[str, Any], file: Path):
    """The ``tokenizers.Tokenizer`` the metadata describes, or None when the file has no vocabulary.

    Raises:
        CheckpointError: a tokenizer model or pre-tokenizer trilogy does not rebuild; a vocabulary without the
            merges or scores its model needs.
    """
    model = metadata.get("tokenizer.ggml.model")
    if model is None or "tokenizer.ggml.tokens" not in metadata:
        return None
    if model not in BUILDERS:
        raise CheckpointError(f"{file}: tokenizer model {model!r} (tokenizer.ggml.model) is not supported; "
                              f"supported: {', '.join(BUILDERS)}")
    tokenizer = BUILDERS[model](metadata, file)
    _add_tokens(tokenizer, metadata)
    _add_bos_eos(tokenizer, metadata, add_bos_default=model == "llama")
    return tokenizer


def chat_template_from_gguf(metadata: dict[str, Any]) -> ChatTemplate | None:
    """``tokenizer.chat_template`` with the special tokens it may name (``bos_token``, ...), or None."""
    source = metadata.get("tokenizer.chat_template")
    if not isinstance(source, str):
        return None
    return ChatTemplate(source, _special_tokens(metadata))


def _special_tokens(metadata: dict[str, Any]) -> dict[str, str]:
    tokens = metadata.get("tokenizer.ggml.tokens") or []
    ids = {name: metadata.get(key) for name, key in SPECIAL_IDS.items()}
    return {name: tokens[i] for name, i in ids.items() if isinstance(i, int) and 0 <= i < len(tokens)}


# --- the two tokenizer models ----------------------------------------------------------------------------
def _byte_level(metadata: dict[str, Any], file: Path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = metadata.get("tokenizer.ggml.pre")
    if pre not in PRE_TOKENIZERS:
        raise CheckpointError(f"{file}: pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; supported: "
                              f"{', '.join(str(name) for name in PRE_TOKENIZERS if name)}")
    if "tokenizer.ggml.merges" not in metadata:
        raise CheckpointError(f"{file}: a byte-level BPE vocabulary needs tokenizer.ggml.merges, which is missing")
    spelling = byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {}
    for index, token in enumerate(metadata["tokenizer.ggml.tokens"]):  # tokens outside the alphabet, respelled
        vocab[token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode())] = index
    merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="",
                                     fuse_unk=False))
    split = PRE_TOKENIZERS[pre]
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False) if split is None else \
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


#: the architectures whose SentencePiece vocabulary is Gemma's: tokens of spaces spelled with real spaces, and
#: scores that do not follow the merges' order (the tokens' order in the file does)
GEMMA_VOCABULARIES = ("gemma2", "gemma3")
#: the architectures that prefix "▁" in a normalizer, before any split (Phi-3's tokenizer.json), not in Metaspace:
#: " hi" becomes "▁▁hi", as llama.cpp has it, not "▁hi"
PREFIX_NORMALIZED = ("phi3",)


def _sentencepiece(metadata: dict[str, Any], file: Path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    gemma = metadata.get("general.architecture") in GEMMA_VOCABULARIES
    tokens = metadata["tokenizer.ggml.tokens"]
    if gemma:
        tokens = [token.replace(" ", "▁") if token.isspace() else token for token in tokens]
    vocab = {token: index for index, token in enumerate(tokens)}
    if "tokenizer.ggml.merges" in metadata:
        merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    elif gemma:
        merges = merges_from_scores(vocab, {token: -float(index) for index, token in enumerate(tokens)})
    elif "tokenizer.ggml.scores" in metadata:
        merges = merges_from_scores(vocab, dict(zip(tokens, metadata["tokenizer.ggml.scores"], strict=True)))
    else:
        raise CheckpointError(f"{file}: a SentencePiece vocabulary needs tokenizer.ggml.scores (or merges), "
                              "which are missing")
    tokenizer = Tokenizer(models.BPE(vocab, merges, fuse_unk=True, byte_fallback=True))
    prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))  # "▁" before the first word
    if prefix and metadata.get("general.architecture") in PREFIX_NORMALIZED:
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", split=False,
                                                           prepend_scheme="first" if prefix else "never")
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + [decoders.Strip(" ", 1, 0)] if prefix else steps)
    return tokenizer


#: tokenizer.ggml.model -> the builder of its tokenizer
BUILDERS: dict[str, Callable[[dict[str, Any], Path], Any]] = {"gpt2": _byte_level, "llama": _sentencepiece}


def merges_from_scores(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """The BPE merges a SentencePiece vocabulary implies: every split of a token into two tokens of the
    vocabulary, ranked by the merged token's score (highest first), then longer left and right pieces first, then
    the merged token's place in the vocabulary and the pieces' ids (the order transformers gives them)."""
    ranked = []
    for place, (token, score) in enumerate(scores.items()):
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                ranked.append(((-score, -len(left), -len(right), place, vocab[left], vocab[right]), (left, right)))
    ranked.sort(key=lambda entry: entry[0])
    return [pair for _, pair in ranked]


def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> character map of byte-level BPE: printable bytes stand for themselves, the others for
    chr(256), chr(257), ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {**{byte: chr(byte) for byte in printable}, **{byte: chr(256 + i) for i, byte in enumerate(others)}}


# --- special tokens --------------------------------------------------------------------------------------
def _add_tokens(tokenizer, metadata: dict[str, Any]) -> None:
    """Control tokens and the named special tokens as special added tokens, user-defined ones as plain added
    tokens: each matched whole in any text. A token the vocabulary spells otherwise (respelled bytes) is left."""
    from tokenizers import AddedToken

    tokens = metadata["tokenizer.ggml.tokens"]
    types = metadata.get("tokenizer.ggml.token_type") or [0] * len(tokens)
    vocab = tokenizer.get_vocab()
    named = set(_special_tokens(metadata).values())
    special = [t for t, kind in zip(tokens, types, strict=True) if (kind == CONTROL or t in named) and t in vocab]
    plain = [t for t, kind in zip(tokens, types, strict=True) if kind == USER_DEFINED and t in vocab]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])


def _add_bos_eos(tokenizer, metadata: dict[str, Any], add_bos_default: bool) -> None:
    """The post-processor that adds BOS (and EOS) to each encoded text, as ``tokenizer.ggml.add_bos_token``
    (``add_eos_token``) asks; SentencePiece vocabularies add BOS unless the file says not to, as llama.cpp does."""
    from tokenizers import processors

    tokens = metadata["tokenizer.ggml.tokens"]
    ends = []
    for flag, key, default in (("tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id", add_bos_default),
                               ("tokenizer.ggml.add_eos_token", "tokenizer.ggml.eos_token_id", False)):
        token_id = metadata.get(key)
        ends.append(tokens[token_id] if metadata.get(flag, default) and isinstance(token_id, int) else None)
    bos, eos = ends
    if bos is None and eos is None:
        return
    first, last = [bos] if bos else [], [eos] if eos else []
    tokenizer.post_processor = processors.TemplateProcessing(
        single=[*first, "$A:0", *last], pair=[*first, "$A:0", *last, *(f"{t}:1" for t in first), "$B:1",
                                              *(f"{t}:1" for t in last)],
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in dict.fromkeys(first + last)])
