"""One multi-head attention for self, causal and cross attention.

Masks are booleans, True = may attend (see ``masks.py``); an optional additive ``bias`` carries T5's relative
positions (with the mask already folded in); grouped-query attention when ``n_kv_heads < n_heads``; scores
optionally soft-capped, tanh(s / cap) * cap (Gemma 2), which no SDPA kernel does, so on the explicit path.
``F.scaled_dot_product_attention`` is the fast path; ``return_attention=True`` takes the explicit path and
returns the weights, as does a hook on the scores or weights (``hook_point.py``). On CPU, attention dropout
also takes the explicit path, with trilogy's boolean-mask dropout (``dropout.py``): CPU SDPA would leave its
fused kernel for a math path that keeps the same (B, H, T, S) tensors, and a float mask. GPU kernels fuse
dropout, so there SDPA keeps it. So does a bias that needs a gradient (T5's, in training) on CPU: SDPA's math
path would make more passes over the scores.

Legend: B batch, T query length, S key length, H query heads, K key/value heads, D head size, C model width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.torch_version import TorchVersion

from ..config import ModelConfig
from .dropout import dropout
from .hook_point import HookPoint
from .init import InitScheme
from .kv_cache import KeyValues, StaticKeyValues
from .masks import causal_mask
from .norm import build_norm
from .position import apply_rotary

#: SDPA attends each group of query heads to its key/value head itself from torch 2.5 (``enable_gqa``)
_SDPA_GROUPS = TorchVersion(torch.__version__) >= (2, 5)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None,
           is_causal: bool = False, scale: float | None = None, dropout_p: float = 0.0,
           return_weights: bool = False, softcap: float | None = None,
           on_scores: Callable[[Tensor], Tensor] | None = None,
           on_pattern: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over heads.

    Args:
        q: (B, H, T, D); k, v: (B, K, S, D) with H a multiple of K.
        mask: (B|1, 1|H, T, S) bool, True = may attend; ignored when ``bias`` is given.
        bias: (B|1, H, T, S) additive float scores, masking already folded in (-inf where not allowed).
        is_causal: apply the causal mask (aligned to the end of the keys) instead of ``mask``.
        softcap: scaled scores become tanh(s / softcap) * softcap before the mask or bias is applied.
        on_scores, on_pattern: given the scores (B, H, T, S) after scale, softcap, bias and mask, and the
            weights after softmax, before dropout; what they return is used (the explicit path, as for
            ``return_weights``).
    Returns:
        output (B, H, T, D) and the weights (B, H, T, S) when ``return_weights`` else None.
    """
    batch, n_heads, length, _ = q.shape
    n_kv = k.size(1)
    grouped = {"enable_gqa": True} if n_kv != n_heads else {}
    on_cpu = q.device.type == "cpu"
    # a bias that learns (T5's, in training) sends CPU SDPA to its math path: this path with more passes
    learned_bias = on_cpu and bias is not None and bias.requires_grad and torch.is_grad_enabled()
    watched = on_scores is not None or on_pattern is not None
    explicit = return_weights or learned_bias or softcap is not None or watched
    if not explicit and (dropout_p == 0.0 or not on_cpu) and (not grouped or _SDPA_GROUPS):
        out = F.scaled_dot_product_attention(  # GPU kernels fuse dropout
            q, k, v, attn_mask=bias.to(q.dtype) if bias is not None else mask, dropout_p=dropout_p,
            is_causal=is_causal and q.size(2) > 1, scale=scale, **grouped,
        )
        return out, None
    # the query heads of one key/value head side by side, so keys and values are used as they are (not copied)
    q = q.reshape(batch, n_kv, n_heads // n_kv * length, -1)  # (B, K, H/K * T, D)
    scores = (q @ k.transpose(-2, -1)).view(batch, n_heads, length, -1)  # (B, H, T, S)
    scale = q.size(-1) ** -0.5 if scale is None else scale
    if scale != 1.0:  # T5 does not scale
        scores = scores * scale
    if softcap is not None:  # in two steps, so that at most two (B, H, T, S) tensors exist at once
        scores = (scores / softcap).tanh_()
        scores = scores * softcap
    if bias is not None:
        scores = scores + bias
    elif is_causal or mask is not None:
        allowed = causal_mask(length, k.size(2), q.device) if is_causal else mask
        scores = scores.masked_fill(~allowed, float("-inf"))
    if on_scores is not None:
        scores = on_scores(scores)
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if on_pattern is not None:
        weights = on_pattern(weights)
    out = dropout(weights, dropout_p).reshape(batch, n_kv, -1, k.size(2)) @ v  # (B, K, H/K * T, D)
    return out.view(batch, n_heads, length, -1), weights if return_weights else None  # (B, H, T, D)


class Attention(nn.Module):
    """Multi-head attention. Self-attention projects q, k, v with one matrix; cross-attention projects q from
    the input and k, v from the context (the encoder output), which a cache computes only once. With
    ``qk_norm`` each head's q and k are normalised before rotary (Qwen3); with a sliding ``window`` the
    cache keeps only the keys the next query reaches (the mask that hides the others comes from the stack).
    Its hook points (TransformerLens's): q, k, v as projected (after qk_norm; k and v of the new positions only),
    q and k after rotary, the scores and weights (computed on the explicit path only while a hook reads them),
    and each head's output z."""

    def __init__(self, config: ModelConfig, cross: bool = False, window: int | None = None):
        super().__init__()
        self.cross = cross
        self.window = window
        self.n_heads, self.n_kv_heads, self.d_head = config.n_heads, config.n_kv_heads, config.d_head
        self.scale = config.scale
        self.softcap = config.attention_softcap
        self.dropout = config.dropout
        q_width, kv_width = self.n_heads * self.d_head, self.n_kv_heads * self.d_head
        if cross:
            self.q = nn.Linear(config.d_model, q_width, bias=config.qkv_bias)
            self.kv = nn.Linear(config.d_model, 2 * kv_width, bias=config.qkv_bias)
        else:
            self.qkv = nn.Linear(config.d_model, q_width + 2 * kv_width, bias=config.qkv_bias)
        self.out = nn.Linear(q_width, config.d_model, bias=config.bias)
        self.q_norm = build_norm(config, self.d_head) if config.qk_norm else None
        self.k_norm = build_norm(config, self.d_head) if config.qk_norm else None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # (B, H|K, T|S, D)
        rotates = config.position == "rope" and not cross
        self.hook_rot_q = HookPoint() if rotates else None  # (B, H, T, D): q after rotary
        self.hook_rot_k = HookPoint() if rotates else None  # (B, K, T, D)
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()  # (B, H, T, S)
        self.hook_z = HookPoint()  # (B, H, T, D)

    def init_weights(self, scheme: InitScheme) -> None:
        """The query rows as queries, the output as a projection into the residual stream."""
        if self.cross:
            scheme.linear(self.q, query_rows=self.q.out_features)
            scheme.linear(self.kv)
        else:
            scheme.linear(self.qkv, query_rows=self.n_heads * self.d_head)
        scheme.linear(self.out, residual=True)

    def _heads(self, x: Tensor, n_heads: int) -> Tensor:
        """(B, T, n_heads * D) -> (B, n_heads, T, D)"""
        return x.view(x.size(0), x.size(1), n_heads, self.d_head).transpose(1, 2)

    def _normed(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """q (B, H, T, D) and k (B, K, S, D), each head's vectors normalised when the config has ``qk_norm``."""
        if self.q_norm is None or self.k_norm is None:
            return q, k
        return self.q_norm(q), self.k_norm(k)

    def project(self, x: Tensor, context: Tensor | None = None, rotary: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """The queries, keys and values this attention compares, with rotary angles applied (self-attention), as
        its hook points see them (``hook_q``, ``hook_k``, ``hook_v``; after rotary ``hook_rot_q``, ``hook_rot_k``).

        Args: x (B, T, C); context (B, S, C) for cross-attention; rotary (cos, sin) as in ``forward``.
        Returns: q (B, H, T, D); k, v (B, K, S, D), S = T for self-attention.
        """
        kv_width = self.n_kv_heads * self.d_head
        if self.cross:
            q = self._heads(self.q(x), self.n_heads)  # (B, H, T, D)
            k, v = self.kv(context).split(kv_width, dim=-1)
            q, k = self._normed(q, self._heads(k, self.n_kv_heads))
            return self.hook_q(q), self.hook_k(k), self.hook_v(self._heads(v, self.n_kv_heads))  # (B, K, S, D)
        qkv = self.qkv(x)  # (B, T, (H + 2K) * D)
        if self.n_kv_heads == self.n_heads:  # one view for the three: fewer calls per decoded token
            q, k, v = qkv.view(x.size(0), x.size(1), 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q, k, v = qkv.split([self.n_heads * self.d_head, kv_width, kv_width], dim=-1)
            q = self._heads(q, self.n_heads)  # (B, H, T, D)
            k, v = self._heads(k, self.n_kv_heads), self._heads(v, self.n_kv_heads)  # (B, K, T, D)
        q, k = self._normed(q, k)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if rotary is not None:
            assert self.hook_rot_q is not None and self.hook_rot_k is not None  # built for rotary positions
            q, k = self.hook_rot_q(apply_rotary(q, *rotary)), self.hook_rot_k(apply_rotary(k, *rotary))
        return q, k, v

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                bias: Tensor | None = None, is_causal: bool = False,
                rotary: tuple[Tensor, Tensor] | None = None, past: KeyValues | StaticKeyValues | None = None,
                return_attention: bool = False) -> tuple[Tensor, KeyValues | StaticKeyValues, Tensor | None]:
        """Attend from x to itself (self) or to ``context`` (cross).

        Args:
            x: (B, T, C).
            context: (B, S, C) encoder output, for cross-attention (unused when ``past`` holds its k, v).
            mask, bias, is_causal: see ``attend``.
            rotary: (cos, sin), each (B, 1, T, D), applied to q and k (self-attention).
            past: cached keys and values, each (B, K, S_past, D). Self-attention extends them by the new ones;
                cross-attention reuses them as they are. A sliding layer's hold its last window - 1 positions,
                and ``mask`` covers those and the new ones. A ``StaticKeyValues`` is written in place and
                attended whole (``mask`` hides what is not written yet).
        Returns:
            output (B, T, C); the keys and values to cache, each (B, K, S, D); weights (B, H, T, S) or None.
        """
        if self.cross and past is not None:  # cross-attention's keys and values, cached
            q = self._heads(self.q(x), self.n_heads)  # (B, H, T, D)
            if self.q_norm is not None:
                q = self.q_norm(q)
            q, k, v = self.hook_q(q), past.keys, past.values
        else:
            q, k, v = self.project(x, context, rotary)
            if past is not None:
                past = past.extend(k, v, self.window)  # written into the cache's room (see kv_cache.py)
                k, v = past.keys, past.values  # (B, K, S, D)
        out, weights = attend(
            q, k, v, mask=mask, bias=bias, is_causal=is_causal, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0, return_weights=return_attention, softcap=self.softcap,
            on_scores=self.hook_attn_scores if self.hook_attn_scores.active else None,
            on_pattern=self.hook_pattern if self.hook_pattern.active else None,
        )
        out = self.hook_z(out).transpose(1, 2).reshape(x.size(0), x.size(1), -1)  # (B, T, H * D)
        kept = past.slide(self.window) if past is not None else KeyValues(k, v)  # a sliding layer: its last keys
        return self.out(out), kept, weights
