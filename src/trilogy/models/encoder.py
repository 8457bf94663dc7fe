"""Encoder-only, BERT-style: embeddings, a bidirectional stack, then a head (MLM, classifiers) or none.

Legend: B batch, T length, C model width, V vocabulary, L labels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.embedding import Embeddings
from ..blocks.heads import Classifier, MLMHead, Pooler
from ..blocks.stack import TransformerStack
from ..config import ModelConfig
from ..errors import TrilogyTypeError
from .base import ModelOutput, TransformerModel
from .decoding import StepInputs


class EncoderOnlyTransformer(TransformerModel):
    """BERT-style encoder: every token attends to every real token. ``forward`` returns hidden states
    (B, T, C), or the head's logits when the config has one."""

    arch = "encoder"

    def build(self, config: ModelConfig) -> None:
        self.embeddings = Embeddings(config)
        self.stack = TransformerStack(config, config.n_layers, causal=False)
        needs_pooler = config.pooler or config.head in ("pretraining", "sequence-classification")
        self.pooler = Pooler(config.d_model) if needs_pooler else None
        self.head: nn.Module | None = None
        self.sentence_head: nn.Module | None = None
        if config.head in ("mlm", "pretraining"):
            self.head = MLMHead(config.d_model, config.vocab_size, eps=config.norm_eps)
        if config.head == "pretraining":
            self.sentence_head = Classifier(config.d_model, 2)
        if config.head in ("sequence-classification", "token-classification"):
            self.head = Classifier(config.d_model, config.num_labels, config.dropout)

    def output_head(self) -> nn.Module | None:
        return self.head if isinstance(self.head, MLMHead) else None

    def run(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
            positions: Tensor | None = None, return_attention: bool = False, labels: Tensor | None = None
            ) -> ModelOutput:
        """Args:
            input_ids: (B, T); attention_mask: (B, T), 1 = real token; token_type_ids: (B, T) segment ids;
            labels: MLM targets (B, T) with -100 where not masked (the logits are then not computed), class ids
                (B,) for sequence classification, or (B, T) tags with -100 to skip.
        Returns:
            ModelOutput with hidden_states (B, T, C), pooled (B, C) when there is a pooler, logits from the head,
            and the loss when labels are given.
        """
        attention_mask = self._check(input_ids, "input_ids", attention_mask)
        x = self.embeddings(input_ids, positions, token_type_ids)  # (B, T, C)
        stack = self.stack(x, attention_mask, positions=positions, return_attention=return_attention)
        hidden = stack.hidden
        pooled = self.pooler(hidden) if self.pooler is not None else None
        logits, loss, count, correct = None, None, None, None
        if labels is not None and self.output_head() is not None:
            loss, count, correct = self.lm_loss(hidden, labels)
        elif self.config.head == "sequence-classification" and self.head is not None:
            logits = self.head(pooled)  # (B, L)
        elif self.head is not None:
            logits = self.head(hidden)  # (B, T, V) or (B, T, L)
        if labels is not None and logits is not None:
            count = (labels != -100).sum()
            correct = (logits.argmax(-1) == labels).sum()
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return ModelOutput(
            logits=logits, hidden_states=hidden, pooled=pooled, loss=loss, label_count=count, label_correct=correct,
            sentence_logits=self.sentence_head(pooled) if self.sentence_head is not None else None,
            attentions={"encoder": stack.self_attentions} if return_attention else None,
        )

    def start(self, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 0,
              decoder_start_token_id: int | None = None) -> tuple[StepInputs, Tensor]:
        """An encoder does not generate: this raises TypeError."""
        raise TrilogyTypeError(f"generate needs a decoder-only or encoder-decoder model, got {type(self).__name__}"
                               " (an encoder-only model predicts masked tokens, it does not continue text)")

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, *, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """The notebook's signature: ``mask`` (B, T) is a key-padding mask, True = padding. HF's
        ``attention_mask`` (1 = real token) is accepted instead."""
        if mask is not None:
            attention_mask = self._check(input_ids, "input_ids", attention_mask, mask, "mask")
        out = self.run(input_ids, attention_mask, token_type_ids)
        return out.logits if out.logits is not None else out.hidden_states
