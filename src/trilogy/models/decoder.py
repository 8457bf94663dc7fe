"""Decoder-only, GPT-style: embeddings, a causal stack, a (tied) LM head. Llama is the same family by config
(RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases).

Legend: B batch, T length, C model width, V vocabulary.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..blocks.cache import KVCache
from ..blocks.embedding import Embeddings
from ..blocks.heads import LMHead
from ..blocks.position import positions_from_mask
from ..blocks.stack import TransformerStack
from ..config import ModelConfig
from ..errors import TrilogyError
from .base import ModelOutput, TransformerModel
from .decoding import StepInputs


class DecoderOnlyTransformer(TransformerModel):
    """GPT-style decoder: each token attends to itself and the real tokens before it. ``forward`` returns
    logits (B, T, V), or hidden states when the config has no head."""

    arch = "decoder"

    def build(self, config: ModelConfig) -> None:
        self.embeddings = Embeddings(config)
        self.stack = TransformerStack(config, config.n_layers, causal=True)
        self.lm_head = LMHead(config.d_model, config.vocab_size, config.head_bias) if config.head == "lm" else None

    def output_head(self) -> nn.Module | None:
        return self.lm_head

    def run(self, input_ids: Tensor, attention_mask: Tensor | None = None, positions: Tensor | None = None,
            cache: KVCache | None = None, return_attention: bool = False, labels: Tensor | None = None
            ) -> ModelOutput:
        """Args:
            input_ids: (B, T) new tokens; attention_mask: (B, S) 1 = real token, covering cached + new tokens;
            positions: (B, T) position ids (default: counting real tokens, so left padding starts at 0);
            cache: the KVCache of earlier steps (``KVCache.empty(n_layers)`` to start one);
            labels: (B, T) the token each position should predict (already shifted: labels[:, t] is the target
                of position t), -100 = not counted; the loss is then fused with the head and logits not computed.
        Returns:
            ModelOutput with logits (B, T, V), hidden_states (B, T, C), the updated cache, the loss if labels.
        """
        past = cache.length if cache is not None else 0
        attention_mask = self._check(input_ids, "input_ids", attention_mask, past=past)
        if positions is None:
            positions = positions_from_mask(attention_mask, input_ids.size(1), past, input_ids.device)
        x = self.embeddings(input_ids, positions)  # (B, T, C)
        stack = self.stack(x, attention_mask, positions, cache=cache, return_attention=return_attention)
        loss, count, correct = self.lm_loss(stack.hidden, labels) if labels is not None else (None, None, None)
        return ModelOutput(
            logits=self.lm_head(stack.hidden) if self.lm_head is not None and labels is None else None,
            loss=loss, label_count=count, label_correct=correct,
            hidden_states=stack.hidden, cache=stack.cache,
            attentions={"decoder": stack.self_attentions} if return_attention else None,
        )

    def start(self, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 0,
              decoder_start_token_id: int | None = None) -> tuple[StepInputs, Tensor]:
        """See ``TransformerModel.start``: the prompt (B, T), left-padded when rows differ in length, feeds the
        first step (the prefill). ``decoder_start_token_id`` is not used."""
        self._check_lm_head()
        limit = self._position_limit()
        if limit is not None and max_new_tokens and isinstance(input_ids, Tensor):
            length = input_ids.size(-1)
            if length >= limit:
                raise TrilogyError(f"the prompt ({length} tokens) already fills the model's {limit} positions "
                                   "(max_seq_len): there is no room for a new token")
            if length + max_new_tokens > limit:
                raise TrilogyError(f"the prompt ({length} tokens) + max_new_tokens ({max_new_tokens}) exceed the "
                                   f"model's max_seq_len={limit}; ask for at most {limit - length} new tokens")
        mask = self._check(input_ids, "input_ids", attention_mask)  # None without padding: no step builds one
        positions = positions_from_mask(mask, input_ids.size(1), device=input_ids.device)  # (B|1, T)
        return StepInputs(input_ids, mask, positions), input_ids

    def step(self, inputs: StepInputs, cache: KVCache) -> tuple[Tensor, KVCache]:
        """See ``TransformerModel.step``."""
        x = self.embeddings(inputs.tokens, inputs.positions)  # (B, T, C)
        out = self.stack(x, inputs.mask, inputs.positions, cache=cache)
        assert self.lm_head is not None  # start() refuses a model without one
        return self.lm_head(out.hidden[:, -1]).float(), out.cache  # (B, V)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """See ``TransformerModel.new_cache``."""
        return self._allocate_cache(self.stack, batch, capacity)

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, *,
                attention_mask: Tensor | None = None) -> Tensor:
        """The notebook's signature: ``mask`` (B, T) is a key-padding mask, True = padding. HF's
        ``attention_mask`` (1 = real token) is accepted instead."""
        if mask is not None:
            attention_mask = self._check(input_ids, "input_ids", attention_mask, mask, "mask")
        out = self.run(input_ids, attention_mask)
        return out.logits if out.logits is not None else out.hidden_states
