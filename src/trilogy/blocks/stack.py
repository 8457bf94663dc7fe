"""TransformerStack: N layers plus what they share, computed once per forward: the masks (one set per kind of
layer: full, or a sliding window), T5's relative bias, the rotary angles (the sliding layers' from a table of
their own when the config gives them a base: Gemma 3, ModernBERT), and the final norm. Encoder, decoder
and the two halves of T5 are all stacks.

Legend: B batch, T length, S key length (cached + new), H heads, C model width.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from ..config import ModelConfig, StackSpec
from ..errors import TrilogyError
from .dropout import is_mask_draw
from .hook_point import EmbeddingHooks, HookPoint
from .kv_cache import KVCache, StaticKVCache, kept_positions
from .layer import TransformerLayer
from .masks import (
    causal_mask,
    combine,
    cross_attention_mask,
    prefix_lm_mask,
    self_attention_mask,
    window_mask,
)
from .norm import build_norm
from .position import RelativePositionBias, RotaryEmbedding, positions_from_mask


def _keep_dropout_masks(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """What a checkpointed layer stores besides its input: its dropout masks (booleans, ``dropout.keep_mask``).
    Everything else is recomputed in backward. Drawing the masks again would cost more than the layer's
    matmuls on CPU at long sequences."""
    return CheckpointPolicy.MUST_SAVE if is_mask_draw(op, args) else CheckpointPolicy.PREFER_RECOMPUTE


def _checkpointed(layer: nn.Module):
    return partial(checkpoint, layer, use_reentrant=False,
                   context_fn=partial(create_selective_checkpoint_contexts, _keep_dropout_masks))


class StackOutput(NamedTuple):
    hidden: Tensor  # (B, T, C)
    cache: KVCache | StaticKVCache | None
    self_attentions: list[Tensor] | None  # per layer (B, H, T, S)
    cross_attentions: list[Tensor] | None  # per layer (B, H, T, S_src)


class TransformerStack(nn.Module):
    """The stack ``spec`` describes (its depth, its masking, whether it cross-attends); with
    ``checkpoint_activations`` each layer's activations are recomputed in backward instead of kept (training
    memory for time). It holds the hook points of its input (``embedding_hooks``, which the model hands the
    embeddings) and of its final norm's output."""

    def __init__(self, config: ModelConfig, spec: StackSpec, checkpoint_activations: bool = False):
        super().__init__()
        self.spec = spec
        self.causal = spec.causal
        self.layers = nn.ModuleList(TransformerLayer(config, spec.cross_attention, window,
                                                     attention_norm=i > 0 or config.first_attention_norm)
                                    for i, window in enumerate(spec.windows))
        self.relative_bias = (
            RelativePositionBias(config.n_heads, config.relative_buckets, config.relative_max_distance,
                                 bidirectional=not spec.causal)
            if config.position == "relative" else None
        )
        rope = config.position == "rope"
        self.rotary = RotaryEmbedding(config.rotary_dims, config.rope_theta, config.rope_linear_factor) if rope \
            else None
        slides = any(window is not None for window in spec.windows)  # the sliding layers' own table (Gemma 3)
        self.rotary_local = RotaryEmbedding(config.rotary_dims, config.rope_theta_local) \
            if rope and slides and config.rope_theta_local is not None else None
        self.final_norm = build_norm(config) if config.final_norm else None
        self.embedding_hooks = EmbeddingHooks(positions=config.position in ("learned", "sinusoidal"))
        self.hook_final_norm = HookPoint() if config.final_norm else None  # (B, T, C)
        self.checkpoint_activations = checkpoint_activations

    def masks(self, attention_mask: Tensor | None, query_len: int, key_len: int,
              prefix_length: Tensor | None = None, window: int | None = None
              ) -> tuple[Tensor | None, Tensor | None, bool]:
        """The self-attention mask, bias and causal flag the layers of this stack with this sliding ``window``
        (None: the full-attention layers) receive.

        Returns (mask (B|1, 1, T, S) bool or None, bias (1|B, H, T, S) float or None, is_causal). ``is_causal``
        lets SDPA apply causality itself when there is no padding and no cache offset. ``attention_mask`` is
        None when no row has padding: the models check that once per call (``inputs.attention_mask_from``),
        so no layer reads the mask back from the device. ``prefix_length`` (B,) (a prefix LM's) opens each
        row's prefix both ways (``masks.prefix_lm_mask``). A sliding layer also hides the keys ``window`` or more
        positions from each query (``masks.window_mask``), and attends only to those its cache keeps: the mask
        and bias cover the last ``kept_positions(S - T, window) + T`` keys of the S.
        """
        mask: Tensor | None
        if prefix_length is not None:
            mask, is_causal = prefix_lm_mask(attention_mask, prefix_length, query_len, key_len), False
        else:
            is_causal = self.causal and attention_mask is None and query_len == key_len
            needs_mask = attention_mask is not None or (self.causal and 1 < query_len < key_len)
            mask = self_attention_mask(attention_mask, query_len, key_len, self.causal) if needs_mask else None
        if window is not None:
            kept = kept_positions(key_len - query_len, window) + query_len  # the keys this layer attends
            if kept > window:  # some query does not reach every key
                device = mask.device if mask is not None else self.layers[0].self_attn.out.weight.device
                reach = window_mask(query_len, key_len, window, device)
                if mask is None and self.causal:
                    mask = causal_mask(query_len, key_len, device)
                # combined as the other masks are: a padded query whose window holds only padding is opened (its
                # output is ignored), so that no NaN reaches the real positions through the explicit path
                mask, is_causal = combine(mask, reach), False
            mask = mask[..., key_len - kept:] if mask is not None else None
            key_len = kept
        if self.relative_bias is None:
            return mask, None, is_causal
        bias = self.relative_bias(query_len, key_len, offset=key_len - query_len)  # (1, H, T, S)
        if is_causal:
            mask = causal_mask(query_len, key_len, bias.device)
        if mask is not None:
            bias = bias.masked_fill(~mask, float("-inf"))
        return None, bias, False

    def forward(self, x: Tensor, attention_mask: Tensor | None = None, positions: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None,
                cache: KVCache | StaticKVCache | None = None, return_attention: bool = False,
                prefix_length: Tensor | None = None) -> StackOutput:
        """Args:
            x: (B, T, C) embedded input.
            attention_mask: (B, S) with 1 for real tokens, covering cached and new positions; None = no padding.
                (A mask is taken as it is: a mask without padding costs SDPA its fastest path.)
            positions: (B, T) position ids for rotary angles (default: a causal stack's follow the mask, a
                bidirectional one's are 0..T-1).
            context, context_mask: encoder output (B, S_src, C) and its (B, S_src) mask, for cross-attention.
            cache: the KVCache of the tokens before ``x`` (``TransformerModel.new_cache`` makes an empty one), or a
                ``StaticKVCache`` (no padding, ``positions`` given), written in place.
            prefix_length: (B,) a prefix LM's prefix per row, in real tokens (see ``masks``); None = causal.
        """
        masks: dict[int | None, tuple[Tensor | None, Tensor | None, bool]]  # (mask, bias, is_causal) per window
        if isinstance(cache, StaticKVCache):  # every layer attends the whole buffers, the unwritten keys masked
            if attention_mask is not None or positions is None:
                raise TrilogyError("a static KV cache takes rows without padding, and their positions")
            past = 0  # not read: the positions are given
            masks = {None: (cache.visible(x.size(1)), None, False)}
        else:
            past = cache.length if cache is not None else 0
            masks = {window: self.masks(attention_mask, x.size(1), past + x.size(1), prefix_length, window)
                     for window in dict.fromkeys(self.spec.windows)}
        rotary = {}  # (cos, sin) per kind of layer
        if self.rotary is not None:
            if positions is None:  # a causal stack counts real tokens (left padding starts at 0); a bidirectional
                # one numbers 0..T-1, as an encoder's embeddings do
                positions = positions_from_mask(attention_mask if self.causal else None, x.size(1), past, x.device)
            angles = self.rotary(positions, x.dtype)
            local = self.rotary_local(positions, x.dtype) if self.rotary_local is not None else angles
            rotary = {window: angles if window is None else local for window in masks}
        cross_mask = cross_attention_mask(context_mask)
        layer_caches = cache.layers if cache is not None else [None] * len(self.layers)
        new_caches, self_attentions, cross_attentions = [], [], []
        recompute = self.checkpoint_activations and self.training and torch.is_grad_enabled() and cache is None
        for layer, window, layer_cache in zip(self.layers, self.spec.windows, layer_caches, strict=True):
            run_layer = _checkpointed(layer) if recompute else layer
            mask, bias, is_causal = masks[window]
            x, new_cache, (self_w, cross_w) = run_layer(
                x, mask=mask, bias=bias, is_causal=is_causal, rotary=rotary.get(window), context=context,
                context_mask=cross_mask, cache=layer_cache, return_attention=return_attention,
            )
            if cache is not None:  # without a cache, let each layer's keys and values go as soon as possible
                new_caches.append(new_cache)
            self_attentions.append(self_w)
            cross_attentions.append(cross_w)
        if self.final_norm is not None and self.hook_final_norm is not None:  # the norm and its hook point
            x = self.hook_final_norm(self.final_norm(x))
        if isinstance(cache, StaticKVCache):
            cache = cache.advance(x.size(1))  # every layer has written its keys and values in place
        elif cache is not None:
            cache = KVCache(new_caches)
        return StackOutput(
            x,
            cache,
            self_attentions if return_attention else None,
            cross_attentions if return_attention and context is not None else None,
        )
