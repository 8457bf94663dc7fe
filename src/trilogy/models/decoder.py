"""Decoder-only, GPT-style: embeddings, a causal stack, a (tied) LM head. Llama is the same family by config
(RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases).

Legend: B batch, T length, C model width, V vocabulary.
"""

from __future__ import annotations

from torch import Tensor

from ..blocks.kv_cache import KVCache
from ..blocks.position import positions_from_mask
from ..blocks.stack import TransformerStack
from ..errors import TrilogyError
from .base import ModelOutput, TransformerModel
from .input_checks import check_prefix_length
from .step_inputs import StepInputs


class DecoderOnlyTransformer(TransformerModel):
    """GPT-style decoder: each token attends to itself and the real tokens before it. ``forward`` returns
    logits (B, T, V), or hidden states when the config has no head. With ``prefix_lm`` in its config it is the
    prefix LM of the T5 paper: the first ``prefix_length`` real tokens of a row also attend to each other both
    ways, and decoding reads the whole prompt as the prefix."""

    arch = "decoder"
    stack: TransformerStack

    def run(self, input_ids: Tensor, attention_mask: Tensor | None = None, positions: Tensor | None = None,
            cache: KVCache | None = None, return_attention: bool = False, labels: Tensor | None = None,
            prefix_length: Tensor | None = None) -> ModelOutput:
        """Args:
            input_ids: (B, T) new tokens; attention_mask: (B, S) 1 = real token, covering cached + new tokens;
            positions: (B, T) position ids (default: counting real tokens, so left padding starts at 0);
            cache: the KVCache of earlier steps (``new_cache`` makes an empty one);
            labels: (B, T) the token each position should predict (already shifted: labels[:, t] is the target
                of position t), -100 = not counted; the loss is then fused with the head and logits not computed.
                Task heads: class ids (B,) of sequence classification (read at each row's last real token),
                (B, T) tags with -100 to skip, or (B, 2) each row's start and end token index;
            prefix_length: (B,) prefix LM only: the leading real tokens of each row (cached ones included) that
                attend to each other bidirectionally; None = 0, causal throughout.
        Returns:
            ModelOutput with logits (B, T, V) (task heads: (B, L), (B, T, L), or (B, T, 2) start and end),
            hidden_states (B, T, C), the updated cache, the loss if labels.
        """
        past = cache.length if cache is not None else 0
        attention_mask = self._check(input_ids, "input_ids", attention_mask, past=past)
        if prefix_length is not None:
            if not self.structure.output.prefix:
                raise TrilogyError("prefix_length is for a prefix LM (ModelConfig prefix_lm=True); this decoder "
                                   "is causal throughout")
            check_prefix_length(prefix_length, input_ids.size(0), past + input_ids.size(1))
        if positions is None:
            positions = positions_from_mask(attention_mask, input_ids.size(1), past, input_ids.device)
        x = self.embeddings(input_ids, positions, hooks=self.stack.embedding_hooks)  # (B, T, C)
        stack = self.stack(x, attention_mask, positions, cache=cache, return_attention=return_attention,
                           prefix_length=prefix_length)
        return ModelOutput(
            hidden_states=stack.hidden, cache=stack.cache,
            **self._head_outputs(stack.hidden, labels, attention_mask)._asdict(),
            attentions={"decoder": stack.self_attentions} if return_attention else None,
        )

    def start(self, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 0,
              decoder_start_token_id: int | None = None) -> tuple[StepInputs, Tensor]:
        """See ``TransformerModel.start``: the prompt (B, T), left-padded when rows differ in length, feeds the
        first step (the prefill); a prefix LM reads the whole prompt as its prefix. ``decoder_start_token_id`` is
        not used."""
        self._check_generates()
        if isinstance(input_ids, Tensor):
            self._check_room(f"the prompt ({input_ids.size(-1)} tokens)", input_ids.size(-1), max_new_tokens)
        mask = self._check(input_ids, "input_ids", attention_mask)  # None without padding: no step builds one
        positions = positions_from_mask(mask, input_ids.size(1), device=input_ids.device)  # (B|1, T)
        prefix_length = None
        if self.structure.output.prefix:
            prefix_length = (mask.sum(-1) if mask is not None  # (B,) the real tokens of each prompt
                             else input_ids.new_full((input_ids.size(0),), input_ids.size(1)))
        return StepInputs(input_ids, mask, positions, prefix_length=prefix_length), input_ids

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, *,
                attention_mask: Tensor | None = None) -> Tensor:
        """The notebook's signature: ``mask`` (B, T) is a key-padding mask, True = padding. HF's
        ``attention_mask`` (1 = real token) is accepted instead."""
        return self.run(input_ids, self._notebook_mask(input_ids, attention_mask, mask, "mask")).forward_result
