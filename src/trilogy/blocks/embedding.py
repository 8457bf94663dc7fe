"""Embeddings: tokens, plus absolute positions (learned or sinusoidal), token types (BERT), an optional norm
(BERT) and scale (the notebook's and Gemma's sqrt(d_model)). Relative and rotary positions live in the stack
instead. Two Embeddings may share one token table (BART's decoder has its own positions and norm around it).

Legend: B batch, T length, C model width.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .dropout import Dropout
from .hook_point import EmbeddingHooks
from .init import InitScheme
from .norm import build_norm
from .position import LearnedPositions, PositionalEncoding


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig, tokens: nn.Embedding | None = None):
        """``tokens``: another Embeddings' token table, to share (default: a table of its own)."""
        super().__init__()
        self.tokens = tokens if tokens is not None else nn.Embedding(config.vocab_size, config.d_model)
        self.scale = config.embedding_scale
        self.positions: LearnedPositions | PositionalEncoding | None = None
        if config.position == "learned":
            self.positions = LearnedPositions(config.d_model, config.max_seq_len, config.position_offset)
        elif config.position == "sinusoidal":
            self.positions = PositionalEncoding(config.d_model, config.max_seq_len, config.sinusoidal_layout)
        self.token_types = (
            nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        )
        self.norm = build_norm(config) if config.embedding_norm else None
        self.dropout = Dropout(config.dropout)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.embedding(self.tokens, tokens=True)
        if isinstance(self.positions, LearnedPositions):
            scheme.embedding(self.positions.embedding)
        if self.token_types is not None:
            scheme.embedding(self.token_types)

    def forward(self, input_ids: Tensor, positions: Tensor | None = None,
                token_type_ids: Tensor | None = None, hooks: EmbeddingHooks | None = None) -> Tensor:
        """Args: input_ids (B, T); positions (B, T) or None for 0..T-1; token_type_ids (B, T) or None (all 0);
        hooks: the hook points of the stack this input goes to (see ``hook_point.py``).
        Returns (B, T, C)."""
        x = self.tokens(input_ids)  # (B, T, C)
        if self.scale != 1.0:
            x = x * in_dtype(self.scale, x.dtype)
        if hooks is not None:
            x = hooks.hook_embed(x)
        if self.positions is not None:
            position_vectors = self.positions.vectors(positions, x.size(1))  # (B|1, T, C)
            if hooks is not None and hooks.hook_pos_embed is not None:
                position_vectors = hooks.hook_pos_embed(position_vectors)
            x = x + position_vectors
        if self.token_types is not None:
            x = x + (self.token_types.weight[0] if token_type_ids is None else self.token_types(token_type_ids))
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


@cache
def in_dtype(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype``: the scale the embeddings are multiplied by, as Gemma casts its normalizer
    sqrt(d_model) to the embeddings' dtype (in bf16, sqrt(3072) = 55.43 becomes 55.5)."""
    return torch.tensor(value, dtype=dtype, device="cpu").item()
