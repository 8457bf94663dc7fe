"""Heads that sit on a stack's output: the LM head (tied or not), BERT's MLM head, pooler, classifiers and the
span head, with the losses of the task heads.

Legend: B batch, T length, C model width, V vocabulary, L labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TrilogyError
from .dropout import Dropout
from .init import InitScheme
from .mlp import Activation


class LMHead(nn.Module):
    """Hidden states to vocabulary logits: (B, T, C) -> (B, T, V). ``scale`` multiplies the input (T5 v1.0);
    ``softcap`` caps the logits, tanh(z / softcap) * softcap (Gemma 2)."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False, scale: float = 1.0,
                 softcap: float | None = None):
        super().__init__()
        self.scale, self.softcap = scale, softcap
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
        logits = self.proj(self.features(hidden))  # (B, T, V)
        if self.softcap is None:
            return logits
        logits = (logits / self.softcap).tanh_()  # at most two (B, T, V) tensors at once
        return logits * self.softcap


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
    """BERT's pooler: dense + tanh on the first token, (B, T, C) -> (B, C). The same layer starts RoBERTa's
    classification head (its ``classifier.dense``) and, with ReLU, DistilBERT's (``pre_classifier``)."""

    def __init__(self, d_model: int, activation: str = "tanh"):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.act = Activation(activation)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.dense)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.act(self.dense(hidden[:, 0]))


def last_token(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Each row's state at its last real token, a causal stack's summary of the sequence (left or right
    padding): (B, T, C), mask (B, T) True = real (None: all real) -> (B, C)."""
    if attention_mask is None:
        return hidden[:, -1]
    positions = torch.arange(hidden.size(1), device=hidden.device)  # (T,)
    last = (attention_mask * positions).argmax(-1)  # (B,)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class Classifier(nn.Module):
    """Dropout + linear to labels: (..., C) -> (..., L). On a sequence's summary (pooled first token or last
    real token) for sequences, per token for tags; on the pooled output with two labels it is also BERT's
    next-sentence head."""

    def __init__(self, d_model: int, num_labels: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.proj = nn.Linear(d_model, num_labels, bias=bias)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.proj)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(self.dropout(hidden))

    def loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean cross-entropy of ``logits`` (B, L) or (B, T, L) against class ids (B,) or tags (B, T), -100 =
        not counted. Returns (loss, labels counted, labels the argmax gets right)."""
        if labels.shape != logits.shape[:-1]:
            unit = "sequence" if logits.dim() == 2 else "token (-100: skipped)"
            raise TrilogyError(f"labels have shape {tuple(labels.shape)}, expected {tuple(logits.shape[:-1])}: "
                               f"a class id per {unit}")
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return loss, (labels != -100).sum(), (logits.argmax(-1) == labels).sum()


class SpanHead(nn.Module):
    """A span's start and end logits at every position (BERT's ``qa_outputs``): (B, T, C) -> (B, T, 2), [..., 0]
    the start's and [..., 1] the end's, -inf at padding so that neither is ever placed there."""

    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, 2)

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.proj)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """hidden (B, T, C), attention_mask (B, T) True = real token (None: all real) -> (B, T, 2)."""
        logits = self.proj(hidden)  # (B, T, 2)
        return logits if attention_mask is None else logits.masked_fill(~attention_mask[..., None], float("-inf"))

    def loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The mean of the start and end cross-entropies over positions (as transformers), ``logits`` (B, T, 2)
        against ``labels`` (B, 2), each row's start and end token index. Returns (loss, rows counted, rows whose
        start and end the argmax both gets right)."""
        batch, length = logits.shape[:2]
        if tuple(labels.shape) != (batch, 2):
            raise TrilogyError(f"span labels have shape {tuple(labels.shape)}, expected ({batch}, 2): each row's "
                               "start and end token index")
        at = logits.gather(1, labels.clamp(0, length - 1)[:, None])  # (B, 1, 2): each end's own logit
        low, high, padded = torch.stack([labels.min(), labels.max(), at.isneginf().any().long()]).tolist()
        if low < 0 or high >= length or padded:
            raise TrilogyError(f"span labels must be indices of real tokens, in [0, {length}) and not padding")
        loss = (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2
        correct = (logits.argmax(1) == labels).all(-1).sum()  # (B, 2) -> rows with both ends right
        return loss, labels.new_tensor(batch), correct
