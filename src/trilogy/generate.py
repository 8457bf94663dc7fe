"""Decoding with the KV cache: greedy, sampling (temperature, top-k, top-p, repetition penalty), beam search,
and streaming, with Hugging Face ``generate`` semantics.

The prompt runs through the model once (the *prefill*); after that each step feeds only the newest token and
attends over the cache, so a token costs the same however long the text already is (plus attention over the
cache). For encoder-decoder models the encoder runs once and each layer's cross-attention keys/values are
computed at the first step and kept in the cache.

Legend: B batch, N beams, T length, V vocabulary, C model width.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .blocks.cache import KVCache
from .blocks.position import positions_from_mask
from .models import DecoderOnlyTransformer, EncoderDecoderTransformer, TransformerModel

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

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if not _is_int(self.num_beams) or self.num_beams < 1:
            raise ValueError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 0):
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.do_sample and not self.temperature > 0.0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature!r}")
        if not self.repetition_penalty > 0.0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}")
        if self.do_sample and self.num_beams > 1:
            raise ValueError("sampling with beam search is not supported: use num_beams=1 or do_sample=False")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- the model, one step at a time ------------------------------------------------------------------------


@dataclass
class _StepInputs:
    """What the next decoding step feeds the model, for either family.

    ``tokens`` is what the next step feeds (the prompt at first); ``mask`` (B, S) covers cached + new tokens
    and is None when no row has padding, so steps build no mask; ``positions`` (B|1, T) are the new tokens'
    positions; ``context``/``context_mask`` are the encoder output and its padding (encoder-decoder).
    """

    tokens: Tensor  # (B, T)
    mask: Tensor | None
    positions: Tensor
    context: Tensor | None = None  # (B, S_src, C)
    context_mask: Tensor | None = None  # (B, S_src)

    def expand(self, n: int) -> _StepInputs:
        """Each row repeated n times in place (row b becomes rows b*n .. b*n+n-1), for beam search."""

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat_interleave(n, dim=0)

        positions = self.positions if self.mask is None else rows(self.positions)  # (1, T) serves every row
        return _StepInputs(rows(self.tokens), rows(self.mask), positions, rows(self.context), rows(self.context_mask))

    def advance(self, tokens: Tensor) -> _StepInputs:
        """The state for feeding ``tokens`` (B, 1) after the current ones."""
        mask = self.mask
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)  # (B, S + 1)
        return replace(self, tokens=tokens, mask=mask, positions=self.positions[:, -1:] + 1)


def _start(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None,
           decoder_start_token_id: int | None) -> tuple[_StepInputs, Tensor]:
    """Validate the inputs once and return the first step's state and the sequences so far: the prompt
    (decoder-only) or the decoder start token (encoder-decoder), (B, T)."""
    mask = model._check(input_ids, "input_ids", attention_mask)
    if mask is not None and bool(mask.all()):
        mask = None
    if isinstance(model, EncoderDecoderTransformer):
        if decoder_start_token_id is None:
            raise ValueError("this encoder-decoder config has no decoder_start_token_id (nor pad_token_id); "
                             "pass decoder_start_token_id")
        context, _ = model.encode(input_ids, mask)  # (B, S_src, C)
        start = input_ids.new_full((input_ids.size(0), 1), decoder_start_token_id)
        return _StepInputs(start, None, torch.zeros_like(start[:1]), context, mask), start
    positions = positions_from_mask(mask, input_ids.size(1), device=input_ids.device)  # (B|1, T)
    return _StepInputs(input_ids, mask, positions), input_ids


def _next_logits(model: TransformerModel, step: _StepInputs, cache: KVCache) -> tuple[Tensor, KVCache]:
    """One forward step over ``step.tokens`` with the cache. Returns the last position's logits (B, V) as
    float32 and the updated cache. Unlike ``model.run`` it neither re-validates the tokens it chose itself nor
    projects positions other than the last onto the vocabulary."""
    x = model.embeddings(step.tokens, step.positions)  # (B, T, C)
    if isinstance(model, EncoderDecoderTransformer):
        out = model.decoder(x, None, step.positions, context=step.context, context_mask=step.context_mask,
                            cache=cache)
    else:
        out = model.stack(x, step.mask, step.positions, cache=cache)
    return model.lm_head(out.hidden[:, -1]).float(), out.cache  # (B, V)


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


def _token_stream(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None,
                  settings: Settings, decoder_start_token_id: int | None) -> Iterator[Tensor]:
    """Yield the sequences so far (B, T) first, then each step's new tokens (B,) until every row has produced
    EOS or ``max_new_tokens`` tokens are out. Rows that finished get ``pad_token_id``."""
    generator = None
    if settings.seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(settings.seed)
    with torch.inference_mode():
        step, sequences = _start(model, input_ids, attention_mask, decoder_start_token_id)
    yield sequences.clone()
    if settings.max_new_tokens == 0:
        return
    unfinished = torch.ones(sequences.size(0), dtype=torch.bool, device=sequences.device)
    cache = _allocate(model, sequences.size(0), sequences.size(1) + settings.max_new_tokens)
    for produced in range(1, settings.max_new_tokens + 1):
        with torch.inference_mode():
            logits, cache = _next_logits(model, step, cache)  # (B, V)
            tokens = _choose(logits, sequences, settings, generator)  # (B,)
            if settings.eos_token_id is not None:
                tokens = torch.where(unfinished, tokens, settings.pad_token_id)
                unfinished = unfinished & (tokens != settings.eos_token_id)
            sequences = torch.cat([sequences, tokens[:, None]], dim=1)
            step = step.advance(tokens[:, None])
        yield tokens.clone()
        if settings.eos_token_id is not None and produced < settings.max_new_tokens and not bool(unfinished.any()):
            return


def _allocate(model: TransformerModel, batch: int, capacity: int) -> KVCache:
    """An empty cache with room for ``capacity`` positions in every decoder layer, so no step copies it."""
    config, weight = model.config, model.embeddings.tokens.weight
    layers = config.n_decoder_layers if isinstance(model, EncoderDecoderTransformer) else config.n_layers
    return KVCache.allocate(layers, batch, config.n_kv_heads, capacity, config.d_head, weight.dtype,
                            weight.device)


# --- beam search -------------------------------------------------------------------------------------------


def _beam_search(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None, settings: Settings,
                 decoder_start_token_id: int | None) -> Tensor:
    """Beam search with Hugging Face's rules, so the same weights give the same tokens.

    Each step scores every (beam, token) continuation by its summed log-probability and keeps the best 2N
    candidates. Those among the best N that end (EOS, or the length limit) enter the row's pool of N finished
    hypotheses, scored ``sum_logprobs / generated_length ** length_penalty``; the best N that do not end carry
    on. A row is done when its pool is full and the best running beam, scored at the current length, can no
    longer beat the pool's worst (with ``early_stopping`` as soon as the pool is full).

    Returns:
        (B, T0 + L) the best finished hypothesis of each row after its prompt (decoder-only) or start token,
        padded with ``pad_token_id`` to the longest one.
    """
    n, eos = settings.num_beams, settings.eos_token_id
    with torch.inference_mode():
        step, start = _start(model, input_ids, attention_mask, decoder_start_token_id)
        batch, prompt_len = start.shape
        if settings.max_new_tokens == 0:
            return start.clone()
        max_len = prompt_len + settings.max_new_tokens
        device = start.device
        step = step.expand(n)
        running = start.repeat_interleave(n, dim=0)  # (B*N, T)
        running_scores = torch.full((batch, n), _EXCLUDED, device=device)
        running_scores[:, 0] = 0.0  # all beams start identical: only the first may spread
        pad = settings.pad_token_id if settings.pad_token_id is not None else -1
        pool = start.new_full((batch, n, max_len), pad)  # finished hypotheses, (B, N, T_max)
        pool_scores = torch.full((batch, n), _EXCLUDED, device=device)
        pool_lengths = torch.zeros((batch, n), dtype=torch.long, device=device)
        pool_full = torch.zeros((batch, n), dtype=torch.bool, device=device)
        row_open = torch.ones((batch, 1), dtype=torch.bool, device=device)  # can the pool still improve?
        is_top_n = (torch.arange(2 * n, device=device) < n)[None]  # (1, 2N)
        cache = _allocate(model, batch * n, max_len)  # beam reordering copies it: see KVCache.select
        for length in range(prompt_len, max_len):
            logits, cache = _next_logits(model, step, cache)  # (B*N, V)
            vocab = logits.size(-1)
            log_probs = logits.log_softmax(dim=-1)
            if settings.repetition_penalty != 1.0:
                log_probs = _penalise_repeats(log_probs, running, settings.repetition_penalty)
            totals = (log_probs.view(batch, n, vocab) + running_scores[..., None]).view(batch, n * vocab)
            cand_scores, cand_index = totals.topk(2 * n, dim=-1)  # (B, 2N)
            cand_beam, cand_token = cand_index // vocab, cand_index % vocab
            source_rows = (cand_beam + torch.arange(batch, device=device)[:, None] * n).view(-1)  # (B*2N,)
            candidates = torch.cat([running[source_rows], cand_token.view(-1, 1)], dim=1)  # (B*2N, T+1)
            ends = torch.full_like(cand_token, length + 1 == max_len, dtype=torch.bool)
            if eos is not None:
                ends = ends | (cand_token == eos)  # (B, 2N)

            # finished candidates among the best N join the pool, while it can still change
            generated = length + 1 - prompt_len
            may_join = ends & is_top_n & row_open & ~(pool_full.all(dim=1, keepdim=True) & settings.early_stopping)
            join_scores = torch.where(may_join, cand_scores / generated**settings.length_penalty, _EXCLUDED)
            merged_scores = torch.cat([pool_scores, join_scores], dim=1)  # (B, 3N)
            pool_scores, keep = merged_scores.topk(n, dim=1)  # (B, N)
            padded = candidates.new_full((batch * 2 * n, max_len), pad)
            padded[:, : length + 1] = candidates
            merged = torch.cat([pool, padded.view(batch, 2 * n, max_len)], dim=1)  # (B, 3N, T_max)
            pool = merged.gather(1, keep[..., None].expand(-1, -1, max_len))
            pool_lengths = torch.cat([pool_lengths, torch.full_like(join_scores, generated, dtype=torch.long)],
                                     dim=1).gather(1, keep)
            pool_full = torch.cat([pool_full, may_join], dim=1).gather(1, keep)

            # the best N unfinished candidates carry on
            running_scores, pick = (cand_scores + ends.float() * _EXCLUDED).topk(n, dim=1)  # (B, N)
            picked_rows = (pick + torch.arange(batch, device=device)[:, None] * 2 * n).view(-1)  # (B*N,)
            running = candidates[picked_rows]  # (B*N, T+1)
            if bool(ends.all()):
                break
            best_possible = running_scores[:, :1] / (generated**settings.length_penalty)  # (B, 1)
            worst_kept = torch.where(pool_full.all(dim=1, keepdim=True),
                                     pool_scores.min(dim=1, keepdim=True).values, _EXCLUDED)  # (B, 1)
            row_open = row_open & (best_possible > worst_kept)
            all_full = bool(pool_full.all())
            if not bool(row_open.any()) or (settings.early_stopping and all_full):
                break
            cache = cache.select(source_rows[picked_rows])
            step = step.advance(running[:, -1:])
        out_len = prompt_len + int(pool_lengths[:, 0].max())
        return pool[:, 0, :out_len].clone()


# --- public entry points -------------------------------------------------------------------------------------


def settings_for(model: TransformerModel, **options) -> Settings:
    """Settings from ``generate``'s keyword arguments. As in Hugging Face, EOS and pad ids that are not given
    come from the model's config, an explicit ``eos_token_id=None`` means "never stop early", and a missing
    pad id falls back to EOS."""
    eos = options.pop("eos_token_id", model.config.eos_token_id)
    pad = options.pop("pad_token_id", model.config.pad_token_id)
    return Settings(eos_token_id=eos, pad_token_id=eos if pad is None else pad, **options)


def _check_model(model: object, input_ids: Tensor, settings: Settings) -> None:
    """The model can generate, and the prompt plus the new tokens fit in its absolute positions."""
    if not isinstance(model, DecoderOnlyTransformer | EncoderDecoderTransformer):
        raise TypeError(f"generate needs a decoder-only or encoder-decoder model, got {type(model).__name__}"
                        " (an encoder-only model predicts masked tokens, it does not continue text)")
    if model.lm_head is None:
        raise ValueError(f"generate needs a model with an LM head; this config has head={model.config.head!r}")
    limit = model._position_limit()
    if limit is None or settings.max_new_tokens == 0 or not isinstance(input_ids, Tensor):
        return
    if isinstance(model, EncoderDecoderTransformer):
        if 1 + settings.max_new_tokens > limit:
            raise ValueError(f"the start token + max_new_tokens ({settings.max_new_tokens}) exceed the decoder's "
                             f"max_seq_len={limit}; ask for at most {limit - 1} new tokens")
        return
    length = input_ids.size(-1)
    if length >= limit:
        raise ValueError(f"the prompt ({length} tokens) already fills the model's {limit} positions "
                         "(max_seq_len): there is no room for a new token")
    if length + settings.max_new_tokens > limit:
        raise ValueError(f"the prompt ({length} tokens) + max_new_tokens ({settings.max_new_tokens}) exceed the "
                         f"model's max_seq_len={limit}; ask for at most {limit - length} new tokens")


def _decoder_start(model: TransformerModel, decoder_start_token_id: int | None) -> int | None:
    if decoder_start_token_id is not None:
        return decoder_start_token_id
    config = model.config
    return config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id


def _in_eval_mode(model: TransformerModel):
    """Generation runs without dropout; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    return was_training


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
            early), seed (a private RNG for sampling; None = torch's global one).
    Returns:
        (B, T + new) prompt and new tokens (decoder-only), or (B, 1 + new) decoder tokens starting with the
        start token (encoder-decoder). Rows that finished early are padded with the pad token.
    """
    settings = settings_for(model, **options)
    _check_model(model, input_ids, settings)
    start_id = _decoder_start(model, decoder_start_token_id)
    was_training = _in_eval_mode(model)
    try:
        if settings.num_beams > 1:
            return _beam_search(model, input_ids, attention_mask, settings, start_id)
        steps = _token_stream(model, input_ids, attention_mask, settings, start_id)
        sequences = next(steps)
        new_tokens = [tokens[:, None] for tokens in steps]
        return torch.cat([sequences, *new_tokens], dim=1)
    finally:
        model.train(was_training)


def stream(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None = None, *,
           decoder_start_token_id: int | None = None, **options) -> Iterator[Tensor]:
    """Like ``generate`` (greedy or sampling), but an iterator over each step's new tokens (B,), each yielded
    as soon as it is chosen. Concatenated after the prompt (or start token) they equal ``generate``'s result.
    The arguments are checked now, not at the first token. Beam search cannot stream: its best hypothesis is
    only known at the end."""
    settings = settings_for(model, **options)
    _check_model(model, input_ids, settings)
    if settings.num_beams > 1:
        raise ValueError("beam search cannot stream (the best beam is only known at the end): use num_beams=1")
    return _streamed(model, input_ids, attention_mask, settings, _decoder_start(model, decoder_start_token_id))


def _streamed(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor | None, settings: Settings,
              start_id: int | None) -> Iterator[Tensor]:
    was_training = _in_eval_mode(model)
    try:
        steps = _token_stream(model, input_ids, attention_mask, settings, start_id)
        next(steps)
        yield from steps
    finally:
        model.train(was_training)


def generate_text(model: DecoderOnlyTransformer, input_ids: Tensor, max_length: int = 20,
                  temperature: float = 1.0) -> Tensor:
    """The notebook's exercise, same signature and results: greedy decoding until the sequences are
    ``max_length`` tokens long (no stopping at EOS; the temperature does not change an argmax). It now decodes
    with the KV cache instead of re-running the whole sequence for every token.

    Args:
        input_ids: (B, T) prompt.
    Returns:
        (B, max(T, max_length)) prompt followed by the generated tokens.
    """
    if not isinstance(model, DecoderOnlyTransformer):
        raise TypeError(f"generate_text needs a decoder-only model, got {type(model).__name__}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    settings = Settings(max_new_tokens=max(0, max_length - input_ids.size(1)))
    _check_model(model, input_ids, settings)
    model.eval()  # as the notebook does
    steps = _token_stream(model, input_ids, None, settings, None)
    return torch.cat([next(steps), *(tokens[:, None] for tokens in steps)], dim=1)
