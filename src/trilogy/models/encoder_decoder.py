"""Encoder-decoder, T5-style: one shared embedding (BART: one token table, each stack with its own positions and
norm), a bidirectional encoder stack, a causal decoder stack whose layers also cross-attend to the encoder output
(source padding masked), and an LM head.

Legend: B batch, S source length, T target length, C model width, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..blocks.kv_cache import KVCache
from ..blocks.position import positions_from_mask
from ..blocks.stack import TransformerStack
from ..errors import TrilogyError
from .base import ModelOutput, TransformerModel
from .step_inputs import StepInputs


class EncoderDecoderTransformer(TransformerModel):
    """T5-style encoder-decoder. ``forward(input_ids, decoder_input_ids, ...)`` returns logits (B, T, V), or
    the decoder's hidden states when the config has no head."""

    arch = "encoder-decoder"
    encoder: TransformerStack
    decoder: TransformerStack

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               return_attention: bool = False) -> tuple[Tensor, list[Tensor] | None]:
        """Run the encoder once. Returns its output (B, S, C) and, on request, its attention weights."""
        attention_mask = self._check(input_ids, "input_ids", attention_mask)
        return self._encoded(input_ids, attention_mask, return_attention)

    def _encoded(self, input_ids: Tensor, attention_mask: Tensor | None, return_attention: bool = False
                 ) -> tuple[Tensor, list[Tensor] | None]:
        x = self.embeddings(input_ids, hooks=self.encoder.embedding_hooks)  # (B, S, C)
        stack = self.encoder(x, attention_mask, return_attention=return_attention)
        return stack.hidden, stack.self_attentions

    def start(self, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 0,
              decoder_start_token_id: int | None = None) -> tuple[StepInputs, Tensor]:
        """See ``TransformerModel.start``: the encoder runs once on the source (B, S); the decoder starts from
        ``decoder_start_token_id`` (default: the config's, else its pad token)."""
        self._check_generates()
        self._check_room("the start token", 1, max_new_tokens)
        if decoder_start_token_id is None:
            config = self.config
            decoder_start_token_id = (config.decoder_start_token_id if config.decoder_start_token_id is not None
                                      else config.pad_token_id)
        if decoder_start_token_id is None:
            raise TrilogyError("this encoder-decoder config has no decoder_start_token_id (nor pad_token_id); "
                               "pass decoder_start_token_id")
        mask = self._check(input_ids, "input_ids", attention_mask)  # None without padding: no layer masks
        context, _ = self._encoded(input_ids, mask)  # (B, S_src, C)
        start = input_ids.new_full((input_ids.size(0), 1), decoder_start_token_id)  # (B, 1)
        return StepInputs(start, None, torch.zeros_like(start[:1]), context, mask), start

    def run(self, input_ids: Tensor | None, decoder_input_ids: Tensor, attention_mask: Tensor | None = None,
            decoder_attention_mask: Tensor | None = None, encoder_hidden_states: Tensor | None = None,
            cache: KVCache | None = None, return_attention: bool = False, labels: Tensor | None = None
            ) -> ModelOutput:
        """Args:
            input_ids: (B, S) source ids (may be None when ``encoder_hidden_states`` is given);
            decoder_input_ids: (B, T) target ids, starting with the decoder start token;
            attention_mask: (B, S) 1 = real source token, masked in the encoder and in cross-attention;
            decoder_attention_mask: (B, past + T) 1 = real target token;
            encoder_hidden_states: (B, S, C) from ``encode``, to skip the encoder (generation);
            cache: the decoder's KVCache; its cross-attention keys/values are computed once and reused;
            labels: (B, T) target token of each decoder position, -100 = not counted (logits then not computed).
        Returns:
            ModelOutput with logits (B, T, V), hidden_states (B, T, C), encoder_hidden_states and the cache.
        """
        encoder_attentions = None
        if encoder_hidden_states is None:
            if input_ids is None:
                raise TrilogyError("give input_ids or encoder_hidden_states")
            attention_mask = self._check(input_ids, "input_ids", attention_mask)
            encoder_hidden_states, encoder_attentions = self._encoded(input_ids, attention_mask, return_attention)
        elif attention_mask is not None:
            attention_mask = attention_mask.bool()
        past = cache.length if cache is not None else 0
        decoder_attention_mask = self._check(
            decoder_input_ids, "decoder_input_ids", decoder_attention_mask, mask_name="decoder_attention_mask",
            past=past,
        )
        positions = positions_from_mask(decoder_attention_mask, decoder_input_ids.size(1), past,
                                        decoder_input_ids.device)
        y = self._output_embeddings(decoder_input_ids, positions, None, self.decoder.embedding_hooks)  # (B, T, C)
        stack = self.decoder(
            y, decoder_attention_mask, positions, context=encoder_hidden_states, context_mask=attention_mask,
            cache=cache, return_attention=return_attention,
        )
        attentions = None
        if return_attention:
            attentions = {"decoder": stack.self_attentions, "cross": stack.cross_attentions}
            if encoder_attentions is not None:
                attentions["encoder"] = encoder_attentions
        return ModelOutput(
            hidden_states=stack.hidden, encoder_hidden_states=encoder_hidden_states, cache=stack.cache,
            attentions=attentions, **self._head_outputs(stack.hidden, labels, decoder_attention_mask)._asdict(),
        )

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None, *, attention_mask: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None) -> Tensor:
        """The notebook's signature ``(src, tgt, src_mask, tgt_mask)``: ``src_mask`` (B, S) is a key-padding
        mask (True = padding), applied in the encoder and in cross-attention; ``tgt_mask`` (T, T) may be
        given but must be the causal mask (True above the diagonal), since the decoder is always causal.
        HF's ``attention_mask`` / ``decoder_attention_mask`` (1 = real token) are accepted instead."""
        attention_mask = self._notebook_mask(input_ids, attention_mask, src_mask, "src_mask")
        if tgt_mask is not None:
            _check_causal(tgt_mask, decoder_input_ids.size(1) if torch.is_tensor(decoder_input_ids) else 0)
        return self.run(input_ids, decoder_input_ids, attention_mask, decoder_attention_mask).forward_result


def _check_causal(tgt_mask: Tensor, length: int) -> None:
    expected = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tgt_mask.device), diagonal=1)
    blocked = tgt_mask if tgt_mask.dtype == torch.bool else torch.isinf(tgt_mask)
    if tuple(tgt_mask.shape) != (length, length) or not torch.equal(blocked, expected):
        raise TrilogyError(
            f"tgt_mask must be the ({length}, {length}) causal mask (True above the diagonal); "
            "the decoder is always causal, use decoder_attention_mask for target padding"
        )
