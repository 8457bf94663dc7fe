"""Encoder-only, BERT-style: embeddings, a bidirectional stack, then a head (MLM, classifiers, span) or none.

Legend: B batch, T length, C model width, V vocabulary, L labels.
"""

from __future__ import annotations

from torch import Tensor

from ..blocks.position import positions_from_mask
from ..blocks.stack import TransformerStack
from .base import ModelOutput, TransformerModel


class EncoderOnlyTransformer(TransformerModel):
    """BERT-style encoder: every token attends to every real token. ``forward`` returns hidden states
    (B, T, C), or the head's logits when the config has one."""

    arch = "encoder"
    stack: TransformerStack

    def run(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
            positions: Tensor | None = None, return_attention: bool = False, labels: Tensor | None = None
            ) -> ModelOutput:
        """Args:
            input_ids: (B, T); attention_mask: (B, T), 1 = real token; token_type_ids: (B, T) segment ids;
            positions: (B, T) position ids (default 0..T-1; with the config's ``positions_from_mask``, counting
                each row's real tokens, -1 for padding);
            labels: MLM targets (B, T) with -100 where not masked (the logits are then not computed), class ids
                (B,) for sequence classification, (B, T) tags with -100 to skip for token classification, or
                (B, 2) each row's start and end token index for question answering.
        Returns:
            ModelOutput with hidden_states (B, T, C), pooled (B, C) when there is a pooler, logits from the head
            (question answering: (B, T, 2) start and end), and the loss when labels are given.
        """
        attention_mask = self._check(input_ids, "input_ids", attention_mask)
        if positions is None and self.config.positions_from_mask and attention_mask is not None:
            # (B, T): each row's real tokens 0, 1, ..., its padding -1 (the row before 0 in the position table)
            positions = positions_from_mask(attention_mask, input_ids.size(1)).masked_fill(~attention_mask, -1)
        x = self.embeddings(input_ids, positions, token_type_ids, self.stack.embedding_hooks)  # (B, T, C)
        stack = self.stack(x, attention_mask, positions=positions, return_attention=return_attention)
        return ModelOutput(
            hidden_states=stack.hidden, **self._head_outputs(stack.hidden, labels, attention_mask)._asdict(),
            attentions={"encoder": stack.self_attentions} if return_attention else None,
        )

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, *, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """The notebook's signature: ``mask`` (B, T) is a key-padding mask, True = padding. HF's
        ``attention_mask`` (1 = real token) is accepted instead."""
        attention_mask = self._notebook_mask(input_ids, attention_mask, mask, "mask")
        return self.run(input_ids, attention_mask, token_type_ids).forward_result
