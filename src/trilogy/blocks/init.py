"""How weights start: one ``InitScheme`` per model, applied by each module type to its own weights
(``init_weights(scheme)`` on attention, MLPs, embeddings and heads), so the init follows what a weight does
rather than what it is called.

Scaled attention (GPT-2, BERT, Llama): N(0, 0.02) for projections and embeddings; in a pre-norm stack (GPT-2,
Llama) the projections that write into the residual stream (attention output, MLP down) are scaled down by
sqrt(2 * layers), as GPT-2 does (a post-norm stack, BERT's, normalises every sum and keeps 0.02).

Unscaled attention (T5, ``attention_scale=1``) folds the scale into the init instead, as Mesh TensorFlow's T5
does: token embeddings N(0, 1) (the tied head multiplies by d_model^-0.5), other embeddings (the relative-
position bias) N(0, d_model^-0.5), every projection N(0, fan_in^-0.5) and the queries another d_head^-0.5
smaller. With 0.02 there, scores and logits start ~10x too small and a tied T5 takes hundreds of steps to start
using its encoder (``tests/test_init.py``: on a copy task it was still at 4.09 after 100 steps, where this init
and transformers' are near 3.5). Biases start at 0, norms at 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..config import ModelConfig


@dataclass(frozen=True)
class InitScheme:
    unscaled: bool  # T5: the attention scale lives in the init
    residual_std: float  # projections into the residual stream (scaled attention only)
    d_model: int
    query_scale: float  # extra factor on query rows (unscaled attention only)

    @classmethod
    def of(cls, config: ModelConfig) -> InitScheme:
        pre_norm = config.norm_position == "pre"
        residual_std = 0.02 / (2 * max(config.n_layers, 1)) ** 0.5 if pre_norm else 0.02
        return cls(config.attention_scale == 1.0, residual_std, config.d_model, config.d_head**-0.5)

    def linear(self, layer: nn.Linear, residual: bool = False, query_rows: int = 0) -> None:
        """Initialise a projection; ``residual``: it writes into the residual stream; ``query_rows``: its first
        rows compute queries."""
        if self.unscaled:
            nn.init.normal_(layer.weight, std=layer.in_features**-0.5)
            if query_rows:
                layer.weight.data[:query_rows] *= self.query_scale
        else:
            nn.init.normal_(layer.weight, std=self.residual_std if residual else 0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

    def embedding(self, table: nn.Embedding, tokens: bool = False) -> None:
        """Initialise an embedding table; ``tokens``: it embeds token ids (tied to the head when tied)."""
        std = (1.0 if tokens else self.d_model**-0.5) if self.unscaled else 0.02
        nn.init.normal_(table.weight, std=std)
