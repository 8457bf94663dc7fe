"""What the three families share: construction from a config or the notebook's signature, weight init and
tying, input checks, and the output record ``run`` returns.

Legend: B batch, T length, C model width, V vocabulary, H heads, S key length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..blocks.cache import KVCache
from ..blocks.embedding import Embeddings
from ..blocks.loss import linear_cross_entropy
from ..blocks.stack import TransformerStack
from ..config import ModelConfig
from ..errors import TrilogyError, TrilogyTypeError
from ..inputs import attention_mask_from, check_ids
from .decoding import StepInputs


@dataclass
class ModelOutput:
    """Everything one forward pass produced. ``forward`` returns only ``logits`` (or ``hidden_states``)."""

    logits: Tensor | None  # LM/MLM (B, T, V), sequence classifier (B, L), token classifier (B, T, L)
    #   (not computed when LM/MLM labels are given: the loss is then fused with the output projection)
    hidden_states: Tensor  # last stack's output (B, T, C); the decoder's for encoder-decoder
    pooled: Tensor | None = None  # BERT pooler output (B, C)
    sentence_logits: Tensor | None = None  # BERT next-sentence logits (B, 2), pretraining head only
    encoder_hidden_states: Tensor | None = None  # encoder-decoder: (B, S, C)
    cache: KVCache | None = None
    attentions: dict[str, list[Tensor]] | None = None  # "encoder" / "decoder" / "cross": per layer (B, H, T, S)
    loss: Tensor | None = None  # mean cross-entropy over the labelled tokens, when labels were given
    label_count: Tensor | None = None  # how many tokens (or sequences) the loss averages over
    label_correct: Tensor | None = None  # how many of them the argmax gets right (LM heads: not while training)


class TransformerModel(nn.Module):
    """Base of the three families. Build one from a config (``Family(config=cfg)``, or ``trilogy.build``) or
    with the notebook's signature ``Family(vocab_size, d_model=512, n_heads=8, n_layers=6, d_ff=2048,
    max_seq_len=512)``."""

    arch: str = ""
    #: the ``tokenizers.Tokenizer`` of the checkpoint's tokenizer.json (set by ``trilogy.from_pretrained``, or by
    #: you); ``save_pretrained`` writes it back beside the weights
    tokenizer: Any = None
    #: the checkpoint's ``trilogy.chat.ChatTemplate`` (chat_template.jinja or tokenizer_config.json's
    #: ``chat_template``), set by ``trilogy.from_pretrained``; None when it has none. See ``chat_prompt``.
    chat_template: Any = None
    embeddings: Embeddings  # built by each family's ``build``

    def __init__(self, vocab_size: int | None = None, d_model: int = 512, n_heads: int = 8, n_layers: int = 6,
                 d_ff: int = 2048, max_seq_len: int = 512, *, config: ModelConfig | None = None):
        super().__init__()
        if config is None:
            if vocab_size is None:
                raise TrilogyTypeError(f"{type(self).__name__} needs vocab_size (the notebook's signature) or config=")
            config = ModelConfig.notebook(self.arch, vocab_size, d_model, n_heads, n_layers, d_ff, max_seq_len)
        if config.arch != self.arch:
            raise TrilogyError(f"{type(self).__name__} builds arch {self.arch!r}, the config says {config.arch!r}")
        self.config = config
        self.build(config)
        self.init_weights()

    @classmethod
    def from_config(cls, config: ModelConfig) -> TransformerModel:
        return cls(config=config)

    def build(self, config: ModelConfig) -> None:
        raise NotImplementedError

    def output_head(self) -> nn.Module | None:
        """The LM or MLM head (``LMHead`` / ``MLMHead``), or None for models without one."""
        return None

    def output_projection(self) -> nn.Module | None:
        """The linear layer that maps hidden states to the vocabulary (tied to the input embeddings when the
        config says so), or None for models without an LM head."""
        head = self.output_head()
        return cast(nn.Module, head.projection) if head is not None else None

    def lm_loss(self, hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Mean cross-entropy of the LM/MLM head on ``hidden`` (B, T, C) against ``labels`` (B, T), -100 = not
        counted; the logits are never materialised whole (see ``blocks/loss.py``).
        Returns (loss, counted tokens, tokens the argmax predicts)."""
        head = self.output_head()
        if head is None:
            raise TrilogyError(f"this {self.config.arch} model has head {self.config.head!r}, no LM head for labels")
        if tuple(labels.shape) != tuple(hidden.shape[:2]):
            raise TrilogyError(f"labels have shape {tuple(labels.shape)}, expected {tuple(hidden.shape[:2])}")
        counted = labels != -100  # only counted rows reach the head: for MLM that is 15% of them
        projection = head.projection
        total, count, correct = linear_cross_entropy(head.features(hidden[counted]), projection.weight,
                                                     projection.bias, labels[counted])
        return total / count.clamp(min=1), count, correct

    def init_weights(self) -> None:
        """Initialise every weight, then tie the head to the embeddings if the config asks.

        Scaled attention (GPT-2, BERT, Llama): N(0, 0.02) for projections and embeddings; in a pre-norm stack
        (GPT-2, Llama) the residual outputs are scaled down by sqrt(2 * layers), as GPT-2 does (a post-norm
        stack, BERT's, normalises every sum and keeps 0.02).

        Unscaled attention (T5, ``attention_scale=1``) folds the scale into the init instead, as Mesh
        TensorFlow's T5 does: token embeddings N(0, 1) (the tied head multiplies by d_model^-0.5), the
        relative-position bias N(0, d_model^-0.5), every projection N(0, fan_in^-0.5) and the queries another
        d_head^-0.5 smaller. With 0.02 there, scores and logits start ~10x too small and a tied T5 takes
        hundreds of steps to start using its encoder (``tests/test_init.py``: on a copy task it was still at
        4.09 after 100 steps, where this init and transformers' are near 3.5). Norms start at 1."""
        unscaled = self.config.attention_scale == 1.0
        pre_norm = self.config.norm_position == "pre"
        residual_std = 0.02 / (2 * max(self.config.n_layers, 1)) ** 0.5 if pre_norm else 0.02
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if unscaled:
                    nn.init.normal_(module.weight, std=module.in_features**-0.5)
                    if name.endswith(("attn.q", "attn.qkv")):  # the query rows: (H * D, C) of the weight
                        module.weight.data[:self.config.n_heads * self.config.d_head] *= self.config.d_head**-0.5
                else:
                    std = residual_std if name.endswith(("attn.out", "mlp.down")) else 0.02
                    nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                std = (1.0 if name.endswith("tokens") else self.config.d_model**-0.5) if unscaled else 0.02
                nn.init.normal_(module.weight, std=std)
        self.tie_weights()

    def tie_weights(self) -> None:
        head = self.output_projection()
        if head is not None and self.config.tie_embeddings:
            head.weight = self.embeddings.tokens.weight

    def save_pretrained(self, path, format: str = "auto", max_shard_size: int | str = "5GB"):
        """Write config.json, the weights and tokenizer.json to the folder ``path``: the Hugging Face layout
        when the architecture has an equivalent (``format="hf"`` insists), else trilogy's own format
        (``format="trilogy"``), which ``trilogy.from_pretrained`` loads too. The weights are written one tensor
        at a time, as shards with an index past ``max_shard_size`` ("5GB", "500MiB", or bytes). Returns the
        folder."""
        from ..convert import save_pretrained  # convert/ builds models, so it is imported when needed

        return save_pretrained(self, path, format, max_shard_size)

    def chat_prompt(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text of a conversation, rendered by the checkpoint's chat template as transformers'
        ``apply_chat_template`` renders it; encode it with ``self.tokenizer.encode(text,
        add_special_tokens=False)`` (the template writes the special tokens itself).

        Args:
            messages: ``[{"role": "system" | "user" | "assistant", "content": TEXT}, ...]``.
            add_generation_prompt: end with the opening of the assistant's turn, for it to answer.
        Raises:
            ValueError: the model has no chat template, or the template refuses the messages.
        """
        if self.chat_template is None:
            raise TrilogyError("this model has no chat template: its checkpoint has no chat_template.jinja and no "
                             "chat_template in tokenizer_config.json")
        return self.chat_template.render(messages, add_generation_prompt)

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, **options) -> Tensor:
        """Continue ``input_ids`` (B, T) with the KV cache: greedy, sampling or beam search, with Hugging Face
        ``generate`` semantics. See ``trilogy.generate.generate`` for the options; encoder-only models raise."""
        from ..generate import generate  # generate.py drives the models, so it is imported when needed

        return generate(self, input_ids, attention_mask, **options)

    # --- decoding one step at a time: all that generation calls -------------------------------------------

    def start(self, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 0,
              decoder_start_token_id: int | None = None) -> tuple[StepInputs, Tensor]:
        """Check a prompt (decoder-only) or source (encoder-decoder) for decoding ``max_new_tokens`` tokens, and
        prepare the first step (for an encoder-decoder, this runs the encoder).

        Args:
            input_ids: (B, T) prompt or source; attention_mask: (B, T) 1 = real token, None = no padding;
            decoder_start_token_id: encoder-decoder only; default the config's (or its pad token).
        Returns:
            the first step's ``StepInputs`` and the sequences so far (B, T0): the prompt, or the start token.
        """
        raise TrilogyTypeError(f"{type(self).__name__} cannot generate")

    def step(self, inputs: StepInputs, cache: KVCache) -> tuple[Tensor, KVCache]:
        """Feed ``inputs.tokens`` with the cache of the tokens before them. Unlike ``run``, it neither re-checks
        the tokens (generation chose them) nor projects positions other than the last onto the vocabulary.

        Returns:
            the last position's logits (B, V) as float32, and the cache extended by the new tokens.
        """
        raise TrilogyTypeError(f"{type(self).__name__} cannot generate")

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """An empty cache with room for ``capacity`` positions of ``batch`` rows in every layer that ``step``
        runs, so that no step up to that length copies it."""
        raise TrilogyTypeError(f"{type(self).__name__} cannot generate")

    def _allocate_cache(self, stack: TransformerStack, batch: int, capacity: int) -> KVCache:
        weight = self.embeddings.tokens.weight
        return KVCache.allocate(len(stack.layers), batch, self.config.n_kv_heads, capacity, self.config.d_head,
                                weight.dtype, weight.device)

    def _check_lm_head(self) -> None:
        if self.output_head() is None:
            raise TrilogyError(f"generate needs a model with an LM head; this config has head={self.config.head!r}")

    def set_activation_checkpointing(self, enabled: bool = True) -> TransformerModel:
        """Recompute every layer's activations during backward instead of storing them: activation memory
        drops to about one layer's worth, for roughly one more forward pass of compute."""
        for module in self.modules():
            if isinstance(module, TransformerStack):
                module.checkpoint_activations = enabled
        return self

    def num_parameters(self) -> int:
        """Distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.embeddings.tokens.weight.device

    def _position_limit(self) -> int | None:
        return self.config.max_seq_len if self.config.position in ("learned", "sinusoidal") else None

    def _check(self, ids: Tensor, name: str, attention_mask: Tensor | None = None,
               padding_mask: Tensor | None = None, mask_name: str = "attention_mask", past: int = 0
               ) -> Tensor | None:
        """Validate ids and their mask; return the mask as (B, past + T) bool, True = real token."""
        check_ids(ids, self.config.vocab_size, name, self._position_limit(), past)
        return attention_mask_from(ids, attention_mask, padding_mask, mask_name, past)

    def forward(self, *args, **kwargs) -> Tensor:  # pragma: no cover - each family defines its own
        raise NotImplementedError
