"""The batches of every objective: deterministic, resumable, sharded; what a row becomes is the objective's
(``registry.py``, one class per objective).

In every batch ``labels[:, t]`` is what position ``t`` must predict, -100 where nothing is predicted
(padding, unmasked tokens). Encoder-decoder batches also carry ``decoder_input_ids`` (the labels shifted right
after the decoder start token) and ``decoder_attention_mask``. Every batch carries ``loss_normalizer``, the
number of targets in the whole *global* batch divided by the world size, so that ``compute_loss`` gives the
global-batch mean on one process, and DDP's gradient averaging over ranks gives its gradient on several.

``Batches`` is deterministic and resumable: the position (epoch, items taken in that epoch, batches served)
is its whole state, every random choice is drawn from seeds derived from (seed, epoch) and (seed, batch
index), and rank ``r`` of ``world_size`` takes its slice of each global batch after the global batch was built
and noised, so any number of ranks sees exactly the rows one process would.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

from ..data.stream import TOKEN_CACHE_LIMIT, TokenCache, derive_seed, shuffled
from ..data.tokenizer import special_tokens
from ..errors import TrilogyError
from .noise import IGNORE
from .registry import get_objective

SHUFFLE_BUFFER = 4096
#: padded rows are batched by length within groups of this many batches (``Batches._grouped_rows``; transformers'
#: LengthGroupedSampler groups 50)
LENGTH_GROUP_BATCHES = 16


class Batches:
    """A deterministic, resumable iterator of training batches for one objective.

    Args:
        objective: the name of a registered objective (``OBJECTIVES``), which builds the batches.
        documents: a re-iterable split (``corpus.train``): str for the packed objectives, (source, target) for
            ``seq2seq`` and ``classification``.
        tokenizer: from ``trilogy.data.train_tokenizer`` for the matching family.
        seq_len: model input length (encoder input for encoder-decoder).
        batch_size: rows in the *global* batch; rank ``r`` of ``world_size`` gets rows
            ``[r * batch_size // world_size, (r + 1) * batch_size // world_size)``.
        seed: seeds the shuffling and the noise; the same seed gives the same batches.
        epochs: passes over the data, ``None`` for endless training; with a number, the final batch may be
            smaller and the last block of each pass is kept (padded), so that evaluation sees every token.
        shuffle: shuffle items through a buffer of ``SHUFFLE_BUFFER`` each epoch, and batch padded rows by length
            within groups of ``LENGTH_GROUP_BATCHES`` batches (turn off for evaluation).
        target_len: longest target for ``seq2seq`` (default ``seq_len``).
        label_names: the classes for ``classification`` (default: the sorted distinct targets of ``documents``).
        group_by_length: with ``shuffle``, batch padded rows by length (``_grouped_rows``); False serves them
            in the shuffled order.
    """

    def __init__(self, objective: str, documents: Iterable[Any], tokenizer: Tokenizer, seq_len: int,
                 batch_size: int, seed: int = 0, *, rank: int = 0, world_size: int = 1, epochs: int | None = None,
                 shuffle: bool = True, target_len: int | None = None, label_names: Sequence[str] | None = None,
                 group_by_length: bool = True):
        self.task = get_objective(objective)
        if batch_size % world_size or not 0 <= rank < world_size:
            raise TrilogyError(f"batch_size {batch_size} must split evenly over world_size {world_size}, "
                               f"and rank ({rank}) must be in [0, {world_size})")
        if seq_len < 4:
            raise TrilogyError(f"seq_len must be at least 4, got {seq_len}")
        self.objective, self.documents, self.tokenizer = objective, documents, tokenizer
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size, self.epochs, self.shuffle = rank, world_size, epochs, shuffle
        self.target_len = target_len or seq_len
        self.special = special_tokens(tokenizer)
        self._check_tokenizer()
        self.label_names = list(label_names or ()) if self.task.labelled else []
        if self.task.labelled and not self.label_names:
            self.label_names = sorted({target for _, target in documents})
        if self.task.corpus_kind == "text":
            self.tokens = TokenCache(documents, tokenizer, self.special[self.task.separator])
        self._epoch, self._offset, self._batches = 0, 0, 0
        self._items: Iterator[tuple[int, int, Any]] | None = None
        # training on padded rows draws them a group at a time (``_grouped_rows``)
        self._grouped = shuffle and group_by_length and self.task.pads
        self._group: list[list[Any]] = []  # the current group's batches not served yet
        self._group_start: tuple[int, int] = (0, 0)  # the stream position the group was drawn from
        self._group_served = 0
        self._ids: dict[str, np.ndarray] = {}  # ``encoded``'s memory
        self._ids_tokens = 0

    # state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The exact data position, plus what must not change across a resume. Within a group of padded rows
        the position is where the group was drawn and how many of its batches were served."""
        state = {"objective": self.objective, "seq_len": self.seq_len, "batch_size": self.batch_size,
                 "seed": self.seed, "epoch": self._epoch, "offset": self._offset, "batches": self._batches}
        if self._group:
            state["group"] = [*self._group_start, self._group_served]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the world size may differ from the run that saved it."""
        for key in ("objective", "seq_len", "batch_size", "seed"):
            if state[key] != getattr(self, key):
                raise TrilogyError(f"cannot resume: the saved data position has {key}={state[key]!r}, "
                                   f"this run has {getattr(self, key)!r}")
        self._epoch, self._offset, self._batches = state["epoch"], state["offset"], state["batches"]
        self._items, self._group = None, []
        if "group" in state:  # draw that group again and skip what was served
            epoch, offset, served = state["group"]
            self._epoch, self._offset = epoch, offset
            self._group = self._grouped_rows()[served:]
            self._group_served = served

    # iteration -----------------------------------------------------------------------------------------
    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> dict[str, Tensor]:
        if not self._grouped:
            rows = self._take(self.batch_size)
        else:
            if not self._group:
                self._group, self._group_served = self._grouped_rows(), 0
            rows = self._group.pop(0) if self._group else []
            self._group_served += 1
        if not rows:
            raise StopIteration
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "batch", self._batches))
        self._batches += 1
        return self._shard(self._collate(rows, generator))

    def _take(self, count: int) -> list[Any]:
        """The next ``count`` items of the stream (fewer at its end), advancing the position."""
        if self._items is None:
            self._items = self._stream(self._epoch, self._offset)
        rows = []
        for epoch, offset, item in itertools.islice(self._items, count):
            rows.append(item)
            self._epoch, self._offset = epoch, offset
        return rows

    def _grouped_rows(self) -> list[list[Any]]:
        """The rows of the next ``LENGTH_GROUP_BATCHES`` batches from the stream, sorted by length (longest
        first) and cut into batches, the batches in an order drawn from the seed and the group's position:
        each batch pads little, and no schedule of lengths repeats from group to group."""
        self._group_start = (self._epoch, self._offset)
        rows = self._take(LENGTH_GROUP_BATCHES * self.batch_size)
        lengths = self.task.lengths(self, rows)
        rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: lengths[i], reverse=True)]
        group = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        random.Random(derive_seed(self.seed, "group", *self._group_start)).shuffle(group)
        return group

    def _stream(self, epoch: int, skip: int) -> Iterator[tuple[int, int, Any]]:
        """(epoch, items taken in that epoch, item) from ``epoch`` on, the first ``skip`` items left out."""
        while self.epochs is None or epoch < self.epochs:
            items = self._epoch_items()
            if self.shuffle:
                items = shuffled(items, SHUFFLE_BUFFER, random.Random(derive_seed(self.seed, "epoch", epoch)))
            taken = skip
            for item in itertools.islice(items, skip, None):
                taken += 1
                yield epoch, taken, item
            if taken == 0:
                raise TrilogyError(f"the data is too small for one {self.objective} block of seq_len {self.seq_len}")
            epoch, skip = epoch + 1, 0

    def _epoch_items(self) -> Iterator[Any]:
        return self.task.epoch_items(self)

    @property
    def keep_last(self) -> bool:
        """Keep the last, short block of each pass (padded): with a number of epochs, evaluation sees every token."""
        return self.epochs is not None

    # building a global batch --------------------------------------------------------------------------
    def encoded(self, texts: list[str]) -> list[np.ndarray]:
        """The token ids of each text (without the tokenizer's special tokens), remembered across batches and
        epochs up to ``TOKEN_CACHE_LIMIT`` tokens in all: padded objectives read a row's ids for its length
        and again for its batch, every epoch, and tokenising them each time cost a seq2seq step a tenth of its
        time."""
        fresh: dict[str, np.ndarray] = {}
        missing = [text for text in dict.fromkeys(texts) if text not in self._ids]
        if missing:
            for text, encoding in zip(missing, self.tokenizer.encode_batch_fast(missing, add_special_tokens=False),
                                      strict=True):
                fresh[text] = ids = np.asarray(encoding.ids, dtype=np.int32)
                if self._ids_tokens + len(ids) <= TOKEN_CACHE_LIMIT:
                    self._ids[text] = ids
                    self._ids_tokens += len(ids)
        return [fresh[text] if text in fresh else self._ids[text] for text in texts]

    def _collate(self, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        return self.task.collate(self, rows, generator)

    def encoder_decoder(self, inputs: list[Tensor], targets: list[Tensor]) -> dict[str, Tensor]:
        """An encoder-decoder batch of 1-D source and target rows: the decoder reads the targets shifted right
        after the decoder start token."""
        pad, start = self.special["pad"], self.special["decoder_start"]
        input_ids, attention_mask = pad_rows(inputs, pad)
        labels, decoder_attention_mask = pad_rows(targets, IGNORE)
        decoder_input_ids, _ = pad_rows([torch.cat([torch.tensor([start]), t[:-1]]) for t in targets], pad)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "decoder_input_ids": decoder_input_ids, "decoder_attention_mask": decoder_attention_mask}

    def _shard(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        targets = self.task.count_targets(batch["labels"])
        shard = {key: value.tensor_split(self.world_size)[self.rank] for key, value in batch.items()}
        shard["loss_normalizer"] = torch.tensor(max(targets, 1) / self.world_size)
        return shard

    def _check_tokenizer(self) -> None:
        needs, wants_sentinels = self.task.needs, self.task.needs_sentinels
        missing = [name for name in needs if name not in self.special]
        if missing or (wants_sentinels and not self.special["sentinels"]):
            raise TrilogyError(f"objective {self.objective!r} needs a tokenizer with the special tokens "
                               f"{', '.join(needs)}{' and sentinels' if wants_sentinels else ''}; "
                               f"this one lacks {', '.join(missing) or 'sentinels'}")


def pad_rows(rows: Sequence[Tensor], value: int) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D rows to the longest. Returns (padded (B, T), attention mask (B, T), 1 = real)."""
    length = max(len(row) for row in rows)
    padded = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return padded, mask


