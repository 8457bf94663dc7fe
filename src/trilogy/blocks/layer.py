"""TransformerLayer: self-attention, optional cross-attention, MLP, each a residual branch with its norm.

Pre-norm:  x = x + f(norm(x))      (GPT-2, T5, Llama)
Post-norm: x = norm(x + f(x))      (BERT, the original Transformer)
Sandwich:  x = x + norm'(f(norm(x)))   (Gemma 2: ``sandwich_norm``, a norm on each branch's output too)
Parallel:  x = x + attn(norm1(x)) + mlp(norm2(x))   (GPT-NeoX: ``parallel_residual``, both read the input)

Hook points (``hook_point.py``): the residual stream before the layer, between its branches and after it
(post-norm: after each add and norm), and what each branch adds to it (after a sandwich norm and dropout).

Legend: B batch, T length, S source length, C model width.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..config import ModelConfig
from .attention import Attention
from .dropout import Dropout
from .hook_point import HookPoint
from .kv_cache import LayerCache
from .mlp import build_mlp
from .norm import build_norm


class TransformerLayer(nn.Module):
    def __init__(self, config: ModelConfig, cross_attention: bool = False, window: int | None = None,
                 attention_norm: bool = True):
        """``window``: this layer's sliding window (None: full self-attention); ``attention_norm`` False: the
        attention reads the layer's input as it is (ModernBERT's first layer, pre-norm)."""
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.parallel = config.parallel_residual
        self.self_attn = Attention(config, window=window)
        self.self_attn_norm = build_norm(config) if attention_norm else nn.Identity()
        self.cross_attn = Attention(config, cross=True) if cross_attention else None
        self.cross_attn_norm = build_norm(config) if cross_attention else None
        self.mlp = build_mlp(config)
        self.mlp_norm = build_norm(config)
        sandwich = config.sandwich_norm
        self.self_attn_post_norm = build_norm(config) if sandwich else None
        self.cross_attn_post_norm = build_norm(config) if sandwich and cross_attention else None
        self.mlp_post_norm = build_norm(config) if sandwich else None
        self.dropout = Dropout(config.dropout)
        self.hook_resid_pre = HookPoint()  # (B, T, C) each
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = None if self.parallel else HookPoint()
        self.hook_cross_attn_out = HookPoint() if cross_attention else None
        self.hook_resid_mid_cross = HookPoint() if cross_attention else None
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def _branch_input(self, x: Tensor, norm: nn.Module) -> Tensor:
        return norm(x) if self.pre_norm else x

    def _branch_output(self, branch: Tensor, post_norm: nn.Module | None) -> Tensor:
        """What a branch adds to the residual stream: its output, normed again (sandwich) and dropped out."""
        if post_norm is not None:
            branch = post_norm(branch)
        return self.dropout(branch) if self.training else branch  # no call per token when decoding

    def _add(self, x: Tensor, branch: Tensor, norm: nn.Module, post_norm: nn.Module | None, added: HookPoint,
             stream: HookPoint) -> Tensor:
        """The stream ``x`` plus what the branch adds (seen by the hook point ``added``), normed after the add in
        a post-norm layer, seen by ``stream``."""
        x = x + added(self._branch_output(branch, post_norm))
        return stream(x if self.pre_norm else norm(x))

    def forward(self, x: Tensor, mask: Tensor | None = None, bias: Tensor | None = None, is_causal: bool = False,
                rotary: tuple[Tensor, Tensor] | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None, cache: LayerCache | None = None,
                return_attention: bool = False) -> tuple[Tensor, LayerCache, tuple[Tensor | None, Tensor | None]]:
        """Args:
            x: (B, T, C); mask/bias/is_causal/rotary for self-attention (see ``attention.attend``);
            context: (B, S, C) encoder output and context_mask (B, 1, 1, S) for cross-attention;
            cache: this layer's cached keys/values, or None.
        Returns:
            x (B, T, C); the updated LayerCache; (self-attention weights, cross-attention weights), each
            (B, H, T, S) when ``return_attention`` else None.
        """
        cache = cache or LayerCache()
        x = self.hook_resid_pre(x)
        h, self_kv, self_weights = self.self_attn(
            self._branch_input(x, self.self_attn_norm), mask=mask, bias=bias, is_causal=is_causal,
            rotary=rotary, past=cache.self_kv, return_attention=return_attention,
        )
        if self.parallel:  # the MLP reads the layer's input too; both branches are added at once, as GPT-NeoX
            mlp = self._branch_output(self.mlp(self.mlp_norm(x)), self.mlp_post_norm)  # (B, T, C)
            mlp = self.hook_mlp_out(mlp)
            x = x + (mlp + self.hook_attn_out(self._branch_output(h, self.self_attn_post_norm)))
            return self.hook_resid_post(x), LayerCache(self_kv, None), (self_weights, None)
        x = self._add(x, h, self.self_attn_norm, self.self_attn_post_norm, self.hook_attn_out,
                      self.hook_resid_mid)
        cross_kv, cross_weights = None, None
        if self.cross_attn is not None:
            h, cross_kv, cross_weights = self.cross_attn(
                self._branch_input(x, self.cross_attn_norm), context=context, mask=context_mask,
                past=cache.cross_kv, return_attention=return_attention,
            )
            x = self._add(x, h, self.cross_attn_norm, self.cross_attn_post_norm, self.hook_cross_attn_out,
                          self.hook_resid_mid_cross)
        x = self._add(x, self.mlp(self._branch_input(x, self.mlp_norm)), self.mlp_norm, self.mlp_post_norm,
                      self.hook_mlp_out, self.hook_resid_post)
        return x, LayerCache(self_kv, cross_kv), (self_weights, cross_weights)
