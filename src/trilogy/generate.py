"""Decoding with the KV cache: greedy, sampling (temperature, top-k, top-p, repetition penalty), beam search,
and streaming, with Hugging Face ``generate`` semantics.

The prompt runs through the model once (the *prefill*); after that each step feeds only the newest token and
attends over the cache, so a token costs the same however long the text already is (plus attention over the
cache). For encoder-decoder models the encoder runs once and each layer's cross-attention keys/values are
computed at the first step and kept in the cache.

The model is driven only through its decoding API: ``model.start`` checks the inputs and prepares the first
step, ``model.new_cache`` makes the cache, ``model.step`` returns the last position's logits and the extended
cache. Nothing here knows which family it drives. With ``compile=True`` the steps after the prompt go through
``model.compiled_step`` over ``model.new_cache(..., static=True)``: one compiled graph of fixed shapes, which
saves the Python around the few hundred calls of a step (see benchmarks/decode.py for what it buys).

Legend: B batch, N beams, T length, V vocabulary, C model width.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import TrilogyError
from .models import DecoderOnlyTransformer, StepInputs, TransformerModel
from .models.step_compiler import unguarded

#: a static cache's capacity is a multiple of this, so that a compiled step serves prompts of many lengths (the
#: unwritten positions cost a masked attention over them, little beside the weights a step reads)
_STATIC_ROOM = 128
#: HF's score for "not a candidate": large enough to lose every comparison, finite so sums stay ordered
_EXCLUDED = -1.0e9


@dataclass(frozen=True)
class Settings:
    """The decoding controls, checked once. Token ids are already resolved from the model's config."""

    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    seed: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise TrilogyError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if not _is_int(self.num_beams) or self.num_beams < 1:
            raise TrilogyError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise TrilogyError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise TrilogyError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.do_sample and not self.temperature > 0.0:
            raise TrilogyError(f"temperature must be > 0 when sampling, got {self.temperature!r}")
        if not self.repetition_penalty > 0.0:
            raise TrilogyError(f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}")
        if self.do_sample and self.num_beams > 1:
            raise TrilogyError("sampling with beam search is not supported: use num_beams=1 or do_sample=False")
        if self.compile and self.num_beams > 1:
            raise TrilogyError("compile=True decodes greedily or by sampling, not by beam search: use num_beams=1")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- choosing tokens --------------------------------------------------------------------------------------


def _penalise_repeats(scores: Tensor, sequences: Tensor, penalty: float) -> Tensor:
    """HF's repetition penalty: the score of every token already in the row is divided by ``penalty`` when
    positive and multiplied by it when negative. scores (B, V); sequences (B, T)."""
    seen = scores.gather(1, sequences)  # (B, T)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, sequences, seen)


def _filter(scores: Tensor, settings: Settings) -> Tensor:
    """Temperature, then top-k, then top-p (nucleus) on (B, V) scores; removed tokens get -inf."""
    if settings.temperature != 1.0:
        scores = scores / settings.temperature
    if settings.top_k:
        k = min(settings.top_k, scores.size(-1))
        kth_best = scores.topk(k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth_best, float("-inf"))
    if settings.top_p is not None and settings.top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V) probability of the better tokens
        drop = mass_before >= settings.top_p  # the best token is always kept
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return scores


def _choose(logits: Tensor, sequences: Tensor, settings: Settings, generator: torch.Generator | None) -> Tensor:
    """The next token of each row, (B,): argmax, or a draw from the filtered distribution."""
    if settings.repetition_penalty != 1.0:
        logits = _penalise_repeats(logits, sequences, settings.repetition_penalty)
    if not settings.do_sample:
        return logits.argmax(dim=-1)
    probs = _filter(logits, settings).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# --- greedy and sampling, as a stream ------------------------------------------------------------------------


def _token_stream(model: TransformerModel, inputs: StepInputs, sequences: Tensor, settings: Settings
                  ) -> Iterator[Tensor]:
    """Yield each step's new tokens (B,) after ``sequences`` (B, T), the prompt or start token ``model.start``
    returned, until every row has produced EOS or ``max_new_tokens`` tokens are out. Rows that finished get
    ``pad_token_id``."""
    if settings.max_new_tokens == 0:
        return
    generator = None
    if settings.seed is not None:
        generator = torch.Generator(device=sequences.device).manual_seed(settings.seed)
    unfinished = torch.ones(sequences.size(0), dtype=torch.bool, device=sequences.device)
    capacity = sequences.size(1) + settings.max_new_tokens
    if settings.compile:  # a static cache, rounded up so that prompts of other lengths reuse the compiled step
        capacity = -(-capacity // _STATIC_ROOM) * _STATIC_ROOM
    cache = model.new_cache(sequences.size(0), capacity, static=settings.compile)
    step = model.compiled_step() if settings.compile else model.step
    for produced in range(1, settings.max_new_tokens + 1):
        checked = settings.compile and produced > 2  # the first compiled step checked the guards
        # the prompt (any length) runs eagerly, the one-token steps compiled
        with torch.inference_mode(), unguarded() if checked else nullcontext():
            logits, cache = (model.step if produced == 1 else step)(inputs, cache)  # (B, V)
            tokens = _choose(logits, sequences, settings, generator)  # (B,)
            if settings.eos_token_id is not None:
                tokens = torch.where(unfinished, tokens, settings.pad_token_id)
                unfinished = unfinished & (tokens != settings.eos_token_id)
            sequences = torch.cat([sequences, tokens[:, None]], dim=1)
            inputs = inputs.advance(tokens[:, None])
        yield tokens.clone()
        if settings.eos_token_id is not None and produced < settings.max_new_tokens and not bool(unfinished.any()):
            return  # the stopping rule: one read per token


# --- beam search -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Beams:
    """The running hypotheses: sequences (B*N, T) and their summed log-probabilities (B, N)."""

    sequences: Tensor
    scores: Tensor


@dataclass(frozen=True)
class _Candidates:
    """The best 2N continuations of each row: sequences (B*2N, T+1), summed log-probabilities (B, 2N), whether
    each ends (B, 2N), and the running row each continues (B*2N,)."""

    sequences: Tensor
    scores: Tensor
    ends: Tensor
    parents: Tensor


@dataclass(frozen=True)
class _Pool:
    """Each row's N finished hypotheses: sequences (B, N, T_max) padded, scores (B, N), generated lengths
    (B, N), and whether a slot holds a hypothesis (B, N)."""

    sequences: Tensor
    scores: Tensor
    lengths: Tensor
    full: Tensor


def _beam_search(model: TransformerModel, inputs: StepInputs, start: Tensor, settings: Settings) -> Tensor:
    """Beam search with Hugging Face's rules, so the same weights give the same tokens.

    Each step scores every (beam, token) continuation by its summed log-probability and keeps the best 2N
    candidates. Those among the best N that end (EOS, or the length limit) are merged into the row's pool of N
    finished hypotheses, scored ``sum_logprobs / generated_length ** length_penalty``; the best N that do not
    end are selected to carry on. A row is done when its pool is full and the best running beam, scored at the
    current length, can no longer beat the pool's worst (with ``early_stopping`` as soon as the pool is full).

    Returns:
        (B, T0 + L) the best finished hypothesis of each row after its prompt (decoder-only) or start token,
        padded with ``pad_token_id`` to the longest one.
    """
    n = settings.num_beams
    with torch.inference_mode():
        batch, prompt_len = start.shape
        if settings.max_new_tokens == 0:
            return start.clone()
        max_len = prompt_len + settings.max_new_tokens
        inputs = inputs.expand(n)
        scores = torch.full((batch, n), _EXCLUDED, device=start.device)
        scores[:, 0] = 0.0  # all beams start identical: only the first may spread
        beams = _Beams(start.repeat_interleave(n, dim=0), scores)
        pool = _Pool(start.new_full((batch, n, max_len), _pad(settings)), torch.full_like(scores, _EXCLUDED),
                     torch.zeros_like(scores, dtype=torch.long), torch.zeros_like(scores, dtype=torch.bool))
        row_open = torch.ones((batch, 1), dtype=torch.bool, device=start.device)  # can the pool still improve?
        cache = model.new_cache(batch * n, max_len)  # reordered in place by KVCache.select
        for length in range(prompt_len + 1, max_len + 1):  # the sequences' length with this step's token
            logits, cache = model.step(inputs, cache)  # (B*N, V)
            candidates = _score(logits, beams, settings, last=length == max_len)
            pool = _merge(pool, candidates, length - prompt_len, row_open, settings)
            beams, parents = _select(candidates, n)
            if bool(candidates.ends.all()):
                break
            row_open = row_open & _may_improve(pool, beams, length - prompt_len, settings.length_penalty)
            if not bool(row_open.any()) or (settings.early_stopping and bool(pool.full.all())):
                break
            cache = cache.select(parents)
            inputs = inputs.advance(beams.sequences[:, -1:])
        out_len = prompt_len + int(pool.lengths[:, 0].max())
        return pool.sequences[:, 0, :out_len].clone()


def _pad(settings: Settings) -> int:
    """The id that fills the pool's unused positions."""
    return settings.pad_token_id if settings.pad_token_id is not None else -1


def _score(logits: Tensor, beams: _Beams, settings: Settings, last: bool) -> _Candidates:
    """The best 2N (beam, token) continuations of each row by summed log-probability. logits (B*N, V); ``last``:
    this step reaches the length limit, so every candidate ends."""
    batch, n = beams.scores.shape
    vocab = logits.size(-1)
    log_probs = logits.log_softmax(dim=-1)
    if settings.repetition_penalty != 1.0:
        log_probs = _penalise_repeats(log_probs, beams.sequences, settings.repetition_penalty)
    totals = (log_probs.view(batch, n, vocab) + beams.scores[..., None]).view(batch, n * vocab)
    scores, index = totals.topk(2 * n, dim=-1)  # (B, 2N)
    beam, token = index // vocab, index % vocab
    parents = (beam + torch.arange(batch, device=beam.device)[:, None] * n).view(-1)  # (B*2N,)
    sequences = torch.cat([beams.sequences[parents], token.view(-1, 1)], dim=1)  # (B*2N, T+1)
    ends = torch.full_like(token, last, dtype=torch.bool)
    if settings.eos_token_id is not None:
        ends = ends | (token == settings.eos_token_id)  # (B, 2N)
    return _Candidates(sequences, scores, ends, parents)


def _merge(pool: _Pool, candidates: _Candidates, generated: int, row_open: Tensor, settings: Settings) -> _Pool:
    """The pool with the ending candidates among each row's best N merged in, while it can still change
    (``row_open`` (B, 1); with ``early_stopping`` until it is full); each row keeps its N best hypotheses."""
    batch, n = pool.scores.shape
    max_len = pool.sequences.size(-1)
    is_top_n = (torch.arange(2 * n, device=pool.scores.device) < n)[None]  # (1, 2N)
    may_join = candidates.ends & is_top_n & row_open & ~(pool.full.all(dim=1, keepdim=True) & settings.early_stopping)
    join_scores = torch.where(may_join, candidates.scores / generated**settings.length_penalty, _EXCLUDED)
    scores, keep = torch.cat([pool.scores, join_scores], dim=1).topk(n, dim=1)  # (B, N) of (B, 3N)
    padded = candidates.sequences.new_full((batch * 2 * n, max_len), _pad(settings))
    padded[:, : candidates.sequences.size(1)] = candidates.sequences
    merged = torch.cat([pool.sequences, padded.view(batch, 2 * n, max_len)], dim=1)  # (B, 3N, T_max)
    lengths = torch.cat([pool.lengths, torch.full_like(join_scores, generated, dtype=torch.long)], dim=1)
    return _Pool(merged.gather(1, keep[..., None].expand(-1, -1, max_len)), scores, lengths.gather(1, keep),
                 torch.cat([pool.full, may_join], dim=1).gather(1, keep))


def _select(candidates: _Candidates, n: int) -> tuple[_Beams, Tensor]:
    """The best N candidates of each row that do not end, as the next beams, and the running row each
    continues (B*N,): the order the cache is put in."""
    batch = candidates.scores.size(0)
    scores, pick = (candidates.scores + candidates.ends.float() * _EXCLUDED).topk(n, dim=1)  # (B, N)
    rows = (pick + torch.arange(batch, device=pick.device)[:, None] * 2 * n).view(-1)  # (B*N,)
    return _Beams(candidates.sequences[rows], scores), candidates.parents[rows]


def _may_improve(pool: _Pool, beams: _Beams, generated: int, length_penalty: float) -> Tensor:
    """(B, 1) whether each row's pool can still improve: it is not full, or its best running beam, scored at the
    current length, beats its worst hypothesis."""
    best_possible = beams.scores[:, :1] / (generated**length_penalty)  # (B, 1)
    worst_kept = torch.where(pool.full.all(dim=1, keepdim=True),
                             pool.scores.min(dim=1, keepdim=True).values, _EXCLUDED)  # (B, 1)
    return best_possible > worst_kept


# --- public entry points -------------------------------------------------------------------------------------


def settings_for(model: TransformerModel, **options) -> Settings:
    """Settings from ``generate``'s keyword arguments. As in Hugging Face, EOS and pad ids that are not given
    come from the model's config, an explicit ``eos_token_id=None`` means "never stop early", and a missing
    pad id falls back to EOS."""
    eos = options.pop("eos_token_id", model.config.eos_token_id)
    pad = options.pop("pad_token_id", model.config.pad_token_id)
    return Settings(eos_token_id=eos, pad_token_id=eos if pad is None else pad, **options)


@contextmanager
def _eval_mode(model: TransformerModel):
    """Generation runs without dropout; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _started(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None, settings: Settings,
             decoder_start_token_id: int | None) -> tuple[StepInputs, Tensor]:
    with _eval_mode(model), torch.inference_mode():
        return model.start(input_ids, attention_mask, max_new_tokens=settings.max_new_tokens,
                           decoder_start_token_id=decoder_start_token_id)


def generate(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None = None, *,
             decoder_start_token_id: int | None = None, **options) -> Tensor:
    """Generate tokens with the KV cache, with Hugging Face ``generate`` semantics.

    Args:
        model: a decoder-only or encoder-decoder model with an LM head.
        input_ids: (B, T) prompt (decoder-only, left-padded for batches of different lengths) or source
            (encoder-decoder).
        attention_mask: (B, T) 1 = real token, 0 = padding; None = no padding.
        decoder_start_token_id: encoder-decoder only; default the config's (or its pad token).
        options: see ``Settings``: max_new_tokens=20, do_sample=False, temperature=1.0, top_k=None,
            top_p=None, repetition_penalty=1.0, num_beams=1, length_penalty=1.0, early_stopping=False,
            eos_token_id and pad_token_id (when not given: the config's; ``eos_token_id=None`` never stops
            early), seed (a private RNG for sampling; None = torch's global one), compile (decode with
            ``model.compiled_step`` over a ``StaticKVCache``: decoder-only, rows without padding, no beam search;
            the first call for a batch size and capacity compiles, which takes tens of seconds).
    Returns:
        (B, T + new) prompt and new tokens (decoder-only), or (B, 1 + new) decoder tokens starting with the
        start token (encoder-decoder). Rows that finished early are padded with the pad token.
    """
    settings = settings_for(model, **options)
    inputs, sequences = _started(model, input_ids, attention_mask, settings, decoder_start_token_id)
    with _eval_mode(model):
        if settings.num_beams > 1:
            return _beam_search(model, inputs, sequences, settings)
        new_tokens = [tokens[:, None] for tokens in _token_stream(model, inputs, sequences, settings)]
        return torch.cat([sequences, *new_tokens], dim=1)


def stream(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None = None, *,
           decoder_start_token_id: int | None = None, **options) -> Iterator[Tensor]:
    """Like ``generate`` (greedy or sampling), but an iterator over each step's new tokens (B,), each yielded
    as soon as it is chosen. Concatenated after the prompt (or start token) they equal ``generate``'s result.
    The arguments are checked (and an encoder run) now, not at the first token. Beam search cannot stream: its
    best hypothesis is only known at the end."""
    settings = settings_for(model, **options)
    if settings.num_beams > 1:
        raise TrilogyError("beam search cannot stream (the best beam is only known at the end): use num_beams=1")
    inputs, sequences = _started(model, input_ids, attention_mask, settings, decoder_start_token_id)
    return _streamed(model, inputs, sequences, settings)


def _streamed(model: TransformerModel, inputs: StepInputs, sequences: Tensor, settings: Settings
              ) -> Iterator[Tensor]:
    with _eval_mode(model):
        yield from _token_stream(model, inputs, sequences, settings)


def generate_text(model: DecoderOnlyTransformer, input_ids: Tensor, max_length: int = 20,
                  temperature: float = 1.0) -> Tensor:
    """The notebook's exercise, same signature and results: greedy decoding until the sequences are
    ``max_length`` tokens long (no stopping at EOS; the temperature does not change an argmax), decoded with the
    KV cache rather than by re-running the whole sequence for every token.

    Args:
        input_ids: (B, T) prompt.
    Returns:
        (B, max(T, max_length)) prompt followed by the generated tokens.
    """
    if temperature <= 0:
        raise TrilogyError(f"temperature must be > 0, got {temperature}")
    settings = Settings(max_new_tokens=max(0, max_length - input_ids.size(1)))
    model.eval()  # as the notebook does
    with torch.inference_mode():
        inputs, sequences = model.start(input_ids, max_new_tokens=settings.max_new_tokens)
    return torch.cat([sequences, *(tokens[:, None] for tokens in _token_stream(model, inputs, sequences, settings))],
                     dim=1)
