"""Heads that sit on a stack's output: the LM head (tied or not), BERT's MLM head, pooler and classifiers.

Legend: B batch, T length, C model width, V vocabulary, L labels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import Dropout
from .init import InitScheme


class LMHead(nn.Module):
    """Hidden states to vocabulary logits: (B, T, C) -> (B, T, V). ``scale`` multiplies the input (T5 v1.0)."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.proj = nn.Linear(d_model, vocab_size, bias=bias)

    @property
    def projection(self) -> nn.Linear:
        return self.proj

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.proj)

    def features(self, hidden: Tensor) -> Tensor:
        """What the final projection receives: (B, T, C) -> (B, T, C)."""
        return hidden * self.scale if self.scale != 1.0 else hidden

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(self.features(hidden))


class MLMHead(nn.Module):
    """Masked-LM head (the notebook's exercise, BERT's layout): dense, GELU, LayerNorm, decoder to the
    vocabulary. In a model built from a config the decoder weight is tied to the input embeddings."""

    def __init__(self, d_model: int, vocab_size: int, eps: float = 1e-5):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.layer_norm = nn.LayerNorm(d_model, eps=eps)
        self.decoder = nn.Linear(d_model, vocab_size)

    @property
    def projection(self) -> nn.Linear:
        return self.decoder

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.dense)
        scheme.linear(self.decoder)

    def features(self, hidden_states: Tensor) -> Tensor:
        """What the decoder receives: (B, T, C) -> (B, T, C)."""
        return self.layer_norm(F.gelu(self.dense(hidden_states)))

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, V)"""
        return self.decoder(self.features(hidden_states))


class Pooler(nn.Module):
    """BERT's pooler: dense + tanh on the first token. (B, T, C) -> (B, C)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.dense)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.dense(hidden[:, 0]).tanh()


class Classifier(nn.Module):
    """Dropout + linear to labels: (..., C) -> (..., L). On pooled output for sequences, per token for tags;
    on the pooled output with two labels it is also BERT's next-sentence head."""

    def __init__(self, d_model: int, num_labels: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.proj = nn.Linear(d_model, num_labels)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.proj)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(self.dropout(hidden))
