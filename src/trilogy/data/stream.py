"""Streams of training items: documents tokenised a few at a time, packed into fixed-length blocks, shuffled
through a bounded buffer, and seeds derived from names so that every random choice can be replayed."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tokenizers import Tokenizer

TOKENIZE_CHUNK = 16  # documents per call to the tokenizer
TOKEN_CACHE_LIMIT = 1 << 26  # tokens kept in memory between epochs (512 MiB as int64)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that depends only on ``parts`` (the same on every machine and Python run)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def document_tokens(documents: Iterable[str], tokenizer: Tokenizer, separator: int) -> Iterator[np.ndarray]:
    """The token ids of each document followed by ``separator``, without the tokenizer's own special tokens.

    Returns:
        an iterator of (n_tokens + 1,) int64 arrays.
    """
    chunk: list[str] = []
    for document in documents:
        chunk.append(document)
        if len(chunk) == TOKENIZE_CHUNK:
            yield from _encode(chunk, tokenizer, separator)
            chunk = []
    yield from _encode(chunk, tokenizer, separator)


def _encode(texts: list[str], tokenizer: Tokenizer, separator: int) -> Iterator[np.ndarray]:
    for ids in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
        yield np.asarray([*ids.ids, separator], dtype=np.int64)


class TokenCache:
    """``document_tokens`` of a split, replayed from memory after the first complete pass when they hold at
    most ``limit`` tokens, so that only the first epoch pays for tokenisation."""

    def __init__(self, documents: Iterable[str], tokenizer: Tokenizer, separator: int,
                 limit: int = TOKEN_CACHE_LIMIT):
        self.documents, self.tokenizer, self.separator, self.limit = documents, tokenizer, separator, limit
        self._arrays: list[np.ndarray] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._arrays is not None:
            yield from self._arrays
            return
        arrays: list[np.ndarray] | None = []
        size = 0
        for tokens in document_tokens(self.documents, self.tokenizer, self.separator):
            size += len(tokens)
            if arrays is not None and size > self.limit:
                arrays = None
            if arrays is not None:
                arrays.append(tokens)
            yield tokens
        self._arrays = arrays


def pack(token_arrays: Iterable[np.ndarray], block_len: int, stride: int, keep_last: bool) -> Iterator[np.ndarray]:
    """Concatenate token arrays and cut blocks of ``block_len`` tokens, each starting ``stride`` after the last
    (``stride = block_len - 1`` makes consecutive blocks share one token, so that with inputs ``block[:-1]``
    and targets ``block[1:]`` every token after the first is a target exactly once).

    Args:
        keep_last: also yield the final, shorter block when it holds tokens no earlier block covered.
    Returns:
        an iterator of (block_len,) int64 arrays, the last possibly shorter.
    """
    buffer = np.empty(0, dtype=np.int64)
    for tokens in token_arrays:
        buffer = np.concatenate([buffer, tokens])
        start = 0
        while len(buffer) - start >= block_len:
            yield buffer[start:start + block_len]
            start += stride
        buffer = buffer[start:]
    if keep_last and len(buffer) > block_len - stride:
        yield buffer


def shuffled(items: Iterable[Any], buffer_size: int, rng: random.Random) -> Iterator[Any]:
    """``items`` in a random order drawn through a buffer of ``buffer_size`` items (a full shuffle when the
    stream is no longer than the buffer), deterministic given ``rng``'s state."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer
