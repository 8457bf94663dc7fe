"""Tokenizers trained on the user's text with the ``tokenizers`` library, one kind per family:

- ``decoder``: byte-level BPE (GPT-2); specials ``<pad>`` (0) and ``<|endoftext|>`` (1, both bos and eos).
  Every string round-trips exactly.
- ``encoder``: WordPiece (BERT, cased); specials ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (0-4); encoding adds
  ``[CLS] ... [SEP]``. Decoding keeps every non-space character but not the spacing around punctuation.
- ``encoder-decoder``: Unigram (T5's SentencePiece model); specials ``<pad> </s> <unk>`` (0-2) then the sentinels
  ``<extra_id_0>`` ... ``<extra_id_{N-1}>`` (3 onwards); encoding appends ``</s>``. Text is NFKC-normalised
  and decoding drops a leading space.

Training is reproducible: the same text gives the same ``tokenizer.json`` (BPE as ``tokenizers`` trains it,
Unigram after ``_canonical_unigram``, WordPiece with its ``##`` pieces pinned, ``_pinned_wordpiece``).

Save one with ``tokenizer.save("tokenizer.json")`` and load it with ``tokenizers.Tokenizer.from_file``;
``special_tokens`` finds the ids again from the token strings alone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from ..errors import TrilogyError

NUM_SENTINELS = 100  # as T5
CHAR_PENALTY = 1e-4  # score step between the characters Unigram's trainer adds after pruning
UNIGRAM_SEED_SIZE = 100_000  # candidate pieces Unigram prunes down from (library default 1M); ample for vocab_size <= 32k
SPECIAL_NAMES = {
    "pad": ("<pad>", "[PAD]"),
    "bos": ("<|endoftext|>",),
    "eos": ("<|endoftext|>", "</s>"),
    "unk": ("<unk>", "[UNK]"),
    "cls": ("[CLS]",),
    "sep": ("[SEP]",),
    "mask": ("[MASK]",),
}


def sentinel(index: int) -> str:
    return f"<extra_id_{index}>"


def train_tokenizer(arch: str, texts: Iterable[str], vocab_size: int,
                    num_sentinels: int = NUM_SENTINELS) -> Tokenizer:
    """A tokenizer of the kind ``arch`` uses, trained on ``texts`` (streamed) to at most ``vocab_size`` ids,
    special tokens included (``num_sentinels`` is for ``encoder-decoder`` only)."""
    if arch not in TOKENIZER_KINDS:
        raise TrilogyError(f"arch must be one of {', '.join(map(repr, TOKENIZER_KINDS))}, got {arch!r}")
    kind = TOKENIZER_KINDS[arch]
    tokenizer, trainer = kind.untrained(vocab_size, num_sentinels)
    return kind.finished(kind.train(tokenizer, trainer, _lines(texts)), trainer)


def special_tokens(tokenizer: Tokenizer) -> dict:
    """Ids of the special tokens a tokenizer has: keys among pad, bos, eos, unk, cls, sep, mask, plus
    ``decoder_start`` (= pad, as T5) and ``sentinels`` (a list, empty unless encoder-decoder)."""
    found: dict[str, Any] = {}
    for name, candidates in SPECIAL_NAMES.items():
        for token in candidates:
            token_id = tokenizer.token_to_id(token)
            if token_id is not None:
                found[name] = token_id
                break
    sentinels: list[int] = []
    while (token_id := tokenizer.token_to_id(sentinel(len(sentinels)))) is not None:
        sentinels.append(token_id)
    if sentinels:
        found["decoder_start"] = found["pad"]
    found["sentinels"] = sentinels
    return found


def special_ids(tokenizer: Tokenizer) -> set[int]:
    """Every id the tokenizer treats as special (never masked, never drawn as a random replacement)."""
    return {token_id for token_id, token in tokenizer.get_added_tokens_decoder().items() if token.special}


def _canonical_unigram(tokenizer: Tokenizer, num_special: int) -> Tokenizer:
    """The same Unigram pieces with reproducible ids and scores. The trainer's scores differ in the last bits
    from run to run, and the characters it adds after pruning (scored ``CHAR_PENALTY`` apart, below the
    others) come in hash-map order: give those scores to the characters in sorted order, round every score
    to 1e-8, and sort the pieces after the specials by (score, piece)."""
    data = json.loads(tokenizer.to_str())
    pieces = data["model"]["vocab"][num_special:]  # [[piece, log probability], ...]
    by_offset = defaultdict(list)  # the added characters' scores are equal modulo CHAR_PENALTY
    for piece, score in pieces:
        if len(piece) == 1:
            by_offset[round(score % CHAR_PENALTY, 10)].append(piece)
    added = set(max(by_offset.values(), key=len, default=[]))
    scores = sorted((score for piece, score in pieces if piece in added), reverse=True)
    rescored = dict(zip(sorted(added), scores, strict=True))
    ranked = sorted(([piece, round(rescored.get(piece, score), 8)] for piece, score in pieces),
                    key=lambda p: (-p[1], p[0]))
    data["model"]["vocab"] = data["model"]["vocab"][:num_special] + ranked
    return Tokenizer.from_str(json.dumps(data))


def _streamed(tokenizer: Tokenizer, trainer: trainers.Trainer, lines: Iterator[str]) -> Tokenizer:
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer


def _pinned_wordpiece(tokenizer: Tokenizer, trainer: trainers.Trainer, lines: Iterator[str]) -> Tokenizer:
    """WordPiece trained reproducibly. The trainer (BPE's) gives a piece ``##c`` (the character ``c`` inside a
    word) its id when it first meets it, walking the words in hash-map order, and breaks ties between equally
    frequent merges by those ids: so the ids changed from one training to the next, and with them some pieces
    (tokenizers issue #1794). Every such piece is given to the trainer first, sorted, as a special token, which
    fixes its id; then it is made an ordinary piece again."""
    read = list(lines)  # twice: for the pieces, then by the trainer
    prefix = trainer.continuing_subword_prefix  # type: ignore[attr-defined]  # not in the stubs
    inner = set()
    for line in read:
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(line)):
            inner.update(word[1:])
    pinned = [prefix + char for char in sorted(inner)]
    trainer.special_tokens = [*trainer.special_tokens, *pinned]  # type: ignore[attr-defined]
    tokenizer.train_from_iterator(read, trainer)
    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = [token for token in data["added_tokens"] if token["content"] not in pinned]
    return Tokenizer.from_str(json.dumps(data))


def _lines(texts: Iterable[str]) -> Iterator[str]:
    """Texts cut into lines: the trainers count the same words, and Unigram's training is much faster on short
    strings than on whole books."""
    for text in texts:
        yield from text.splitlines(keepends=True)


def _byte_level_bpe(vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    return tokenizer, trainer


def _wordpiece(vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False,
    )
    return tokenizer, trainer


def _unigram(vocab_size: int, num_sentinels: int) -> tuple[Tokenizer, trainers.Trainer]:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = ["<pad>", "</s>", "<unk>"] + [sentinel(i) for i in range(num_sentinels)]
    trainer = trainers.UnigramTrainer(  # type: ignore[call-arg]  # the stubs lack seed_size
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", seed_size=UNIGRAM_SEED_SIZE,
        show_progress=False,
    )
    return tokenizer, trainer


def _with_cls_and_sep(tokenizer: Tokenizer, trainer: trainers.Trainer) -> Tokenizer:
    """BERT's templates: ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]``."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer


def _canonical_with_eos(tokenizer: Tokenizer, trainer: trainers.Trainer) -> Tokenizer:
    """T5's: reproducible Unigram pieces, and ``</s>`` after each text."""
    tokenizer = _canonical_unigram(tokenizer, len(trainer.special_tokens))  # type: ignore[attr-defined]  # not in the stubs
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return tokenizer


@dataclass(frozen=True)
class TokenizerKind:
    """How one family's tokenizer is made: an untrained tokenizer with its trainer (from ``vocab_size`` and
    the number of sentinels), the training on the texts' lines, then what training leaves to do (templates,
    canonical ids)."""

    untrained: Callable[[int, int], tuple[Tokenizer, trainers.Trainer]]
    finished: Callable[[Tokenizer, trainers.Trainer], Tokenizer]
    train: Callable[[Tokenizer, trainers.Trainer, Iterator[str]], Tokenizer] = _streamed


#: each family's tokenizer, as its real checkpoints have it (see the module docstring)
TOKENIZER_KINDS = {
    "decoder": TokenizerKind(lambda vocab_size, _: _byte_level_bpe(vocab_size), lambda tokenizer, _: tokenizer),
    "encoder": TokenizerKind(lambda vocab_size, _: _wordpiece(vocab_size), _with_cls_and_sep,
                             _pinned_wordpiece),
    "encoder-decoder": TokenizerKind(_unigram, _canonical_with_eos),
}
