"""Training objectives: what a batch looks like for each, how it is noised, and its loss.

=================  =================  ================================================================
objective          family             a batch
=================  =================  ================================================================
``clm``            decoder            packed blocks; ``labels[:, t]`` is the token after ``input_ids[:, t]``
``mlm``            encoder            packed ``[CLS] ... [SEP]`` blocks, 15% of tokens chosen (BERT)
``span``           encoder-decoder    packed blocks, T5 span corruption (density 0.15, mean span 3)
``denoise``        encoder-decoder    packed blocks, inputs as ``span``; the target is the whole block (BART)
``seq2seq``        encoder-decoder    (source, target) pairs, padded to the longest in the global batch
``classification`` encoder            (text, label) pairs; ``labels`` (B,) are indices into ``label_names``
=================  =================  ================================================================

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
from torch import Tensor, nn

from .data.stream import TokenCache, derive_seed, pack, shuffled
from .data.tokenizer import special_ids, special_tokens
from .errors import TrilogyError

OBJECTIVES = ("mlm", "clm", "span", "denoise", "seq2seq", "classification")
PACKED = ("mlm", "clm", "span", "denoise")  # objectives on text, packed into blocks; the others take pairs
ENCODER_DECODER = ("span", "denoise", "seq2seq")
IGNORE = -100
MASK_PROBABILITY = 0.15
NOISE_DENSITY = 0.15
MEAN_SPAN_LENGTH = 3.0
SHUFFLE_BUFFER = 4096


# --- masked LM -------------------------------------------------------------------------------------------


def mask_tokens(input_ids: Tensor, maskable: Tensor, mask_id: int, replacements: Tensor,
                generator: torch.Generator, probability: float = MASK_PROBABILITY) -> tuple[Tensor, Tensor]:
    """BERT's masking: each maskable token is chosen with ``probability``; a chosen token becomes ``mask_id``
    (80%), a random id from ``replacements`` (10%) or stays (10%).

    Args:
        input_ids: (B, T); maskable: (B, T) bool, False for special and padding tokens.
    Returns:
        (inputs (B, T), labels (B, T): the original id where chosen, -100 elsewhere).
    """
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    action = torch.rand(input_ids.shape, generator=generator)
    random_ids = replacements[torch.randint(len(replacements), input_ids.shape, generator=generator)]
    inputs = torch.where(chosen & (action < 0.8), mask_id, input_ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, torch.where(chosen, input_ids, IGNORE)


# --- span corruption -------------------------------------------------------------------------------------


def span_counts(length: int, density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN_LENGTH
                ) -> tuple[int, int]:
    """(noise tokens, noise spans) for a sequence of ``length`` tokens, as T5 computes them."""
    if length < 2:
        return 0, 0
    noise = min(max(round(length * density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


def span_lengths(inputs_len: int, density: float = NOISE_DENSITY, mean_span: float = MEAN_SPAN_LENGTH
                 ) -> tuple[int, int]:
    """(raw tokens, target length) such that span-corrupting the raw tokens gives exactly ``inputs_len``
    input tokens or fewer, ``</s>`` included (T5's ``compute_input_and_target_lengths``)."""

    def lengths(raw: int) -> tuple[int, int]:
        noise, spans = span_counts(raw, density, mean_span)
        return raw - noise + spans + 1, noise + spans + 1

    raw = 1
    while lengths(raw + 1)[0] <= inputs_len:
        raw += 1
    return raw, lengths(raw)[1]


def random_spans_noise_mask(length: int, generator: torch.Generator, density: float = NOISE_DENSITY,
                            mean_span: float = MEAN_SPAN_LENGTH) -> Tensor:
    """T5's noise mask: ``span_counts`` noise tokens in that many spans of random (>= 1) lengths, alternating
    with non-noise spans, starting with non-noise.

    Returns:
        (length,) bool, True = noise.
    """
    noise, spans = span_counts(length, density, mean_span)
    if spans == 0:
        return torch.zeros(length, dtype=torch.bool)
    noise_lengths = _random_segmentation(noise, spans, generator)  # (spans,)
    kept_lengths = _random_segmentation(length - noise, spans, generator)  # (spans,)
    run_ends = torch.stack([kept_lengths, noise_lengths], dim=1).flatten().cumsum(0)  # (2 * spans,)
    run_starts = torch.zeros(length, dtype=torch.long)
    run_starts[run_ends[:-1]] = 1
    return run_starts.cumsum(0) % 2 == 1  # odd runs are noise


def _random_segmentation(items: int, segments: int, generator: torch.Generator) -> Tensor:
    """Lengths (segments,) >= 1 summing to ``items``, uniformly over such compositions."""
    cuts = torch.randperm(items - 1, generator=generator)[:segments - 1].sort().values + 1
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([items])])
    return bounds.diff()


def replace_spans(tokens: Tensor, mask: Tensor, sentinels: Sequence[int]) -> Tensor:
    """``tokens`` with each run of masked positions replaced by one sentinel, numbered in order.

    Args:
        tokens: (L,); mask: (L,) bool.
    """
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
    if int(starts.sum()) > len(sentinels):
        raise TrilogyError(f"{int(starts.sum())} spans need more than the tokenizer's {len(sentinels)} sentinels")
    numbered = torch.tensor(list(sentinels[: int(starts.sum())]), dtype=tokens.dtype)
    replaced = tokens.clone()
    replaced[starts] = numbered
    return replaced[~mask | starts]


def corrupt_spans(tokens: Tensor, sentinels: Sequence[int], eos: int, generator: torch.Generator
                  ) -> tuple[Tensor, Tensor]:
    """T5 span corruption of one sequence: inputs keep the non-noise tokens with a sentinel per noise span;
    targets hold each sentinel followed by the span it replaced; both end with ``eos``."""
    noise = random_spans_noise_mask(len(tokens), generator)
    end = torch.tensor([eos], dtype=tokens.dtype)
    inputs = torch.cat([replace_spans(tokens, noise, sentinels), end])
    targets = torch.cat([replace_spans(tokens, ~noise, sentinels), end])
    return inputs, targets


# --- batches ---------------------------------------------------------------------------------------------


class Batches:
    """A deterministic, resumable iterator of training batches for one objective.

    Args:
        objective: one of ``OBJECTIVES``.
        documents: a re-iterable split (``corpus.train``): str for the packed objectives, (source, target) for
            ``seq2seq`` and ``classification``.
        tokenizer: from ``trilogy.data.train_tokenizer`` for the matching family.
        seq_len: model input length (encoder input for encoder-decoder).
        batch_size: rows in the *global* batch; rank ``r`` of ``world_size`` gets rows
            ``[r * batch_size // world_size, (r + 1) * batch_size // world_size)``.
        seed: seeds the shuffling and the noise; the same seed gives the same batches.
        epochs: passes over the data, ``None`` for endless training; with a number, the final batch may be
            smaller and the last block of each pass is kept (padded), so that evaluation sees every token.
        shuffle: shuffle items through a buffer of ``SHUFFLE_BUFFER`` each epoch (turn off for evaluation).
        target_len: longest target for ``seq2seq`` (default ``seq_len``).
        label_names: the classes for ``classification`` (default: the sorted distinct targets of ``documents``).
    """

    def __init__(self, objective: str, documents: Iterable[Any], tokenizer: Tokenizer, seq_len: int,
                 batch_size: int, seed: int = 0, *, rank: int = 0, world_size: int = 1, epochs: int | None = None,
                 shuffle: bool = True, target_len: int | None = None, label_names: Sequence[str] | None = None):
        if objective not in OBJECTIVES:
            raise TrilogyError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
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
        self.label_names = list(label_names or ()) if objective == "classification" else []
        if objective == "classification" and not self.label_names:
            self.label_names = sorted({target for _, target in documents})
        if objective in PACKED:
            separator = self.special["sep" if objective == "mlm" else "eos"]
            self._tokens = TokenCache(documents, tokenizer, separator)
        self._epoch, self._offset, self._batches = 0, 0, 0
        self._items: Iterator[tuple[int, int, Any]] | None = None

    # state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The exact data position, plus what must not change across a resume."""
        return {"objective": self.objective, "seq_len": self.seq_len, "batch_size": self.batch_size,
                "seed": self.seed, "epoch": self._epoch, "offset": self._offset, "batches": self._batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; the world size may differ from the run that saved it."""
        for key in ("objective", "seq_len", "batch_size", "seed"):
            if state[key] != getattr(self, key):
                raise TrilogyError(f"cannot resume: the saved data position has {key}={state[key]!r}, "
                                   f"this run has {getattr(self, key)!r}")
        self._epoch, self._offset, self._batches = state["epoch"], state["offset"], state["batches"]
        self._items = None

    # iteration -----------------------------------------------------------------------------------------
    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> dict[str, Tensor]:
        if self._items is None:
            self._items = self._stream(self._epoch, self._offset)
        rows = []
        for epoch, offset, item in itertools.islice(self._items, self.batch_size):
            rows.append(item)
            self._epoch, self._offset = epoch, offset
        if not rows:
            raise StopIteration
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "batch", self._batches))
        self._batches += 1
        return self._shard(self._collate(rows, generator))

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
        """One pass over the data: blocks of token ids for packed objectives, else (source, target)."""
        if self.objective not in PACKED:
            return iter(self.documents)
        keep_last = self.epochs is not None
        if self.objective == "clm":
            tokens = itertools.chain([np.asarray([self.special["eos"]])], self._tokens)
            return pack(tokens, self.seq_len + 1, self.seq_len, keep_last)
        # mlm adds [CLS] and [SEP]; denoise's target is the block and </s>; span's inputs shrink to seq_len
        block_len = {"mlm": self.seq_len - 2, "denoise": self.seq_len - 1}.get(self.objective)
        block_len = block_len or span_lengths(self.seq_len)[0]
        return pack(self._tokens, block_len, block_len, keep_last)

    # building a global batch --------------------------------------------------------------------------
    def _collate(self, rows: list[Any], generator: torch.Generator) -> dict[str, Tensor]:
        pad = self.special["pad"]
        if self.objective == "clm":
            blocks = [torch.from_numpy(row) for row in rows]
            input_ids, attention_mask = pad_rows([block[:-1] for block in blocks], pad)
            labels, _ = pad_rows([block[1:] for block in blocks], IGNORE)
            return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.objective == "mlm":
            cls, sep = torch.tensor([self.special["cls"]]), torch.tensor([self.special["sep"]])
            input_ids, attention_mask = pad_rows([torch.cat([cls, torch.from_numpy(r), sep]) for r in rows], pad)
            specials = torch.tensor(sorted(special_ids(self.tokenizer)))
            maskable = ~torch.isin(input_ids, specials) & attention_mask.bool()
            vocab = torch.arange(self.tokenizer.get_vocab_size())
            inputs, labels = mask_tokens(input_ids, maskable, self.special["mask"], vocab[~torch.isin(vocab, specials)],
                                         generator)
            return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}
        if self.objective == "span":
            pairs = [corrupt_spans(torch.from_numpy(row), self.special["sentinels"], self.special["eos"], generator)
                     for row in rows]
            return self._encoder_decoder([s for s, _ in pairs], [t for _, t in pairs])
        if self.objective == "denoise":
            blocks = [torch.from_numpy(row) for row in rows]
            eos = torch.tensor([self.special["eos"]])
            noised = [replace_spans(block, random_spans_noise_mask(len(block), generator), self.special["sentinels"])
                      for block in blocks]
            return self._encoder_decoder([torch.cat([inputs, eos]) for inputs in noised],
                                         [torch.cat([block, eos]) for block in blocks])
        sources = self.tokenizer.encode_batch_fast([s for s, _ in rows], add_special_tokens=False)
        if self.objective == "classification":
            body = self.seq_len - 2
            cls, sep = self.special["cls"], self.special["sep"]
            input_ids, attention_mask = pad_rows([torch.tensor([cls, *s.ids[:body], sep]) for s in sources], pad)
            return {"input_ids": input_ids, "attention_mask": attention_mask,
                    "labels": torch.tensor([self._label(target) for _, target in rows])}
        targets = self.tokenizer.encode_batch_fast([t for _, t in rows], add_special_tokens=False)
        eos = self.special["eos"]
        return self._encoder_decoder([torch.tensor([*s.ids[:self.seq_len - 1], eos]) for s in sources],
                                     [torch.tensor([*t.ids[:self.target_len - 1], eos]) for t in targets])

    def _encoder_decoder(self, inputs: list[Tensor], targets: list[Tensor]) -> dict[str, Tensor]:
        pad, start = self.special["pad"], self.special["decoder_start"]
        input_ids, attention_mask = pad_rows(inputs, pad)
        labels, decoder_attention_mask = pad_rows(targets, IGNORE)
        decoder_input_ids, _ = pad_rows([torch.cat([torch.tensor([start]), t[:-1]]) for t in targets], pad)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "decoder_input_ids": decoder_input_ids, "decoder_attention_mask": decoder_attention_mask}

    def _label(self, target: str) -> int:
        if target not in self.label_names:
            raise TrilogyError(f"label {target!r} is not one of the {len(self.label_names)} known labels")
        return self.label_names.index(target)

    def _shard(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        targets = int((batch["labels"] != IGNORE).sum())
        shard = {key: value.tensor_split(self.world_size)[self.rank] for key, value in batch.items()}
        shard["loss_normalizer"] = torch.tensor(max(targets, 1) / self.world_size)
        return shard

    def _check_tokenizer(self) -> None:
        needs = {"clm": ("pad", "eos"), "mlm": ("pad", "cls", "sep", "mask"),
                 "classification": ("pad", "cls", "sep")}.get(self.objective, ("pad", "eos", "decoder_start"))
        wants_sentinels = self.objective in ("span", "denoise")
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


# --- losses ----------------------------------------------------------------------------------------------


def compute_loss(objective: str, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy of ``model`` on ``batch``, summed over targets and divided by ``batch["loss_normalizer"]``.

    Returns:
        (loss, metrics): ``loss_sum`` (nats over this shard's targets), ``targets`` (their count),
        ``correct`` and ``accuracy`` (argmax hits among them; masked accuracy for mlm) when no gradient is
        computed, as in evaluation.
    """
    # the models take the labels and return the loss: for LM/MLM heads it is fused with the output projection,
    # so the (B, T, V) logits are never held whole
    if objective in ENCODER_DECODER:
        out = model.run(batch["input_ids"], batch["decoder_input_ids"], batch["attention_mask"],
                        batch["decoder_attention_mask"], labels=batch["labels"])
    elif objective in OBJECTIVES:
        out = model.run(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    else:
        raise TrilogyError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    targets = int(out.label_count)
    loss_sum = out.loss * targets  # the models return the mean over the counted targets
    metrics = {"loss_sum": float(loss_sum.detach()), "targets": targets}
    if out.label_correct is not None:  # not while training (see blocks/loss.py)
        metrics["correct"] = int(out.label_correct)
        metrics["accuracy"] = metrics["correct"] / max(targets, 1)
    return loss_sum / batch["loss_normalizer"], metrics
