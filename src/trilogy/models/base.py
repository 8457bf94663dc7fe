"""What the three families share: construction from the config's structure spec (or the notebook's signature),
weight init and tying, input checks, the heads' outputs and loss, the decoding step, and the records a model
carries and returns.

Legend: B batch, T length, C model width, V vocabulary, H heads, S key length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from ..blocks.embedding import Embeddings
from ..blocks.heads import Classifier, HeadTransform, LMHead, MLMHead, Pooler, SpanHead, last_token
from ..blocks.hook_point import HookPoint
from ..blocks.init import InitScheme
from ..blocks.kv_cache import KVCache, StaticKVCache
from ..blocks.loss import linear_cross_entropy
from ..blocks.norm import build_norm
from ..blocks.stack import TransformerStack
from ..config import ModelConfig, Structure
from ..errors import TrilogyError, TrilogyTypeError
from .input_checks import attention_mask_from, check_ids
from .step_compiler import compile_step
from .step_inputs import StepInputs

if TYPE_CHECKING:
    from ..hooks import ActivationCache


@dataclass
class ModelOutput:
    """Everything one forward pass produced. ``forward`` returns only ``logits`` (or ``hidden_states``)."""

    logits: Tensor | None  # LM/MLM (B, T, V), sequence classifier (B, L), token classifier (B, T, L), span head
    #   (B, T, 2): [..., 0] start and [..., 1] end logits, -inf at padding
    #   (not computed when LM/MLM labels are given: the loss is then fused with the output projection)
    hidden_states: Tensor  # last stack's output (B, T, C); the decoder's for encoder-decoder
    pooled: Tensor | None = None  # BERT pooler output (B, C)
    sentence_logits: Tensor | None = None  # BERT next-sentence logits (B, 2), pretraining head only
    encoder_hidden_states: Tensor | None = None  # encoder-decoder: (B, S, C)
    cache: KVCache | None = None
    attentions: dict[str, list[Tensor]] | None = None  # "encoder" / "decoder" / "cross": per layer (B, H, T, S)
    loss: Tensor | None = None  # mean cross-entropy over the labelled tokens (or sequences; spans: the mean of
    #   the start and end ones), when labels were given
    label_count: Tensor | None = None  # how many tokens (or sequences, or spans) the loss averages over
    label_correct: Tensor | None = None  # how many of them the argmax gets right (spans: both ends; LM heads:
    #   not while training)

    @property
    def forward_result(self) -> Tensor:
        """What ``forward`` returns: the logits, or the hidden states of a model without a head."""
        return self.logits if self.logits is not None else self.hidden_states


@dataclass(frozen=True)
class Tokenization:
    """What turns text into a model's ids and back: its ``tokenizers.Tokenizer`` (tokenizer.json) and its
    ``trilogy.chat.ChatTemplate`` (None when the checkpoint has none). A model receives it when it is built
    and keeps it; ``save_pretrained`` writes it beside the weights and every copy of the model carries it."""

    tokenizer: Any = None
    chat_template: Any = None


class TransformerModel(nn.Module):
    """Base of the three families. Build one from a config (``Family(config=cfg)``, or ``trilogy.build``) or
    with the notebook's signature ``Family(vocab_size, d_model=512, n_heads=8, n_layers=6, d_ff=2048,
    max_seq_len=512)``.

    The config's ``structure`` decides what is built: the embeddings (a stack's own ones too, sharing the token
    table, where the structure names them), each stack under its attribute
    (``stacks()`` returns them by role), and the heads (``lm_head``, ``head``, ``pooler``, ``sentence_head``,
    None where the structure has none). A family states only how its stacks are wired in ``run`` and how
    decoding starts.

    Keyword args:
        tokenization: the tokenizer and chat template that come with the weights (``Tokenization``).
        checkpoint_activations: recompute each layer's activations in backward instead of keeping them
            (activation memory of about one layer, for roughly one more forward pass of compute).
    """

    arch: str = ""
    embeddings: Embeddings
    lm_head: LMHead | None
    head: nn.Module | None  # MLMHead, Classifier or SpanHead
    pooler: Pooler | None
    sentence_head: Classifier | None

    def __init__(self, vocab_size: int | None = None, d_model: int = 512, n_heads: int = 8, n_layers: int = 6,
                 d_ff: int = 2048, max_seq_len: int = 512, *, config: ModelConfig | None = None,
                 tokenization: Tokenization | None = None, checkpoint_activations: bool = False):
        super().__init__()
        if config is None:
            if vocab_size is None:
                raise TrilogyTypeError(f"{type(self).__name__} needs vocab_size (the notebook's signature) or config=")
            config = ModelConfig.notebook(self.arch, vocab_size, d_model, n_heads, n_layers, d_ff, max_seq_len)
        if config.arch != self.arch:
            raise TrilogyError(f"{type(self).__name__} builds arch {self.arch!r}, the config says {config.arch!r}")
        self.config = config
        self.structure: Structure = config.structure
        self._compiled: Callable | None = None  # compiled_step's compiled step
        self.tokenization = tokenization if tokenization is not None else Tokenization()
        self._build(config, checkpoint_activations)
        self.init_weights()

    def _build(self, config: ModelConfig, checkpoint_activations: bool) -> None:
        structure = self.structure
        self.embeddings = Embeddings(config)
        for spec in structure.stacks:
            if not hasattr(self, spec.embeddings):  # a stack's own positions and norm around the one token table
                self.add_module(spec.embeddings, Embeddings(config, tokens=self.embeddings.tokens))
            self.add_module(spec.module, TransformerStack(config, spec, checkpoint_activations))
        # ModernBERT's head transform ends the pooler, or starts the other classifiers
        head_norm = build_norm(config) if config.head_transform else None
        self.pooler = Pooler(config.d_model, config.pooler_activation, config.bias, head_norm,
                             config.pooling == "mean") if structure.pooler else None
        transform = (HeadTransform(config.d_model, config.pooler_activation, config.bias, build_norm(config))
                     if config.head_transform and structure.classifier and structure.summary != "pooler" else None)
        self.lm_head = (LMHead(config.d_model, config.vocab_size, config.head_bias, config.head_scale,
                               config.logit_softcap) if structure.vocabulary == "lm" else None)
        self.head = None
        if structure.vocabulary == "mlm":
            self.head = MLMHead(config.d_model, config.vocab_size, config.norm_eps, config.bias, config.norm_bias)
        elif structure.classifier == "span":
            self.head = SpanHead(config.d_model, transform)
        elif structure.classifier is not None:
            bare = structure.bare_classifier
            self.head = Classifier(config.d_model, config.num_labels, 0.0 if bare else config.dropout, not bare,
                                   transform)
        self.sentence_head = Classifier(config.d_model, 2) if structure.next_sentence else None

    def stacks(self) -> dict[str, TransformerStack]:
        """The model's stacks by role (``"encoder"``, ``"decoder"``), in the order a forward pass runs them."""
        return {spec.name: getattr(self, spec.module) for spec in self.structure.stacks}

    @property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` that came with the weights (``tokenization``), or None."""
        return self.tokenization.tokenizer

    @property
    def chat_template(self) -> Any:
        """The ``trilogy.chat.ChatTemplate`` that came with the weights (``tokenization``), or None."""
        return self.tokenization.chat_template

    def output_head(self) -> nn.Module | None:
        """The head over the vocabulary (``LMHead`` / ``MLMHead``), or None for models without one."""
        return self.lm_head if self.lm_head is not None else (self.head if self.structure.vocabulary else None)

    def output_projection(self) -> nn.Linear | None:
        """The linear layer that maps hidden states to the vocabulary (tied to the input embeddings when the
        config says so), or None for models without an LM head."""
        head = self.output_head()
        return head.projection if isinstance(head, (LMHead, MLMHead)) else None

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
        softcap = head.softcap if isinstance(head, LMHead) else None
        total, count, correct = linear_cross_entropy(head.features(hidden[counted]), projection.weight,
                                                     projection.bias, labels[counted], softcap=softcap)
        return total / count.clamp(min=1), count, correct

    def _head_outputs(self, hidden: Tensor, labels: Tensor | None, attention_mask: Tensor | None) -> HeadOutputs:
        """What the heads make of the output stack's ``hidden`` (B, T, C), whose real tokens are the last T
        columns of ``attention_mask`` (B, S) (None: all real): with labels of the vocabulary head the loss fused
        with its projection (no logits); else the head's logits, and their loss when labelled (see ``run``)."""
        mask = attention_mask[:, -hidden.size(1):] if attention_mask is not None else None  # (B, T)
        pooled = self.pooler(hidden, mask) if self.pooler is not None else None  # (B, C)
        sentence_logits = self.sentence_head(pooled) if self.sentence_head is not None else None
        if labels is not None and self.output_head() is not None:
            return HeadOutputs(None, pooled, sentence_logits, *self.lm_loss(hidden, labels))
        head = self.lm_head if self.lm_head is not None else self.head
        if head is None:
            return HeadOutputs(None, pooled, sentence_logits)
        structure = self.structure
        if structure.classifier == "span":
            logits = head(hidden, mask)  # (B, T, 2)
        elif structure.summary == "pooler":
            logits = head(pooled)  # (B, L)
        elif structure.summary == "last":
            logits = head(last_token(hidden, mask))  # (B, L)
        else:
            logits = head(hidden)  # (B, T, V|L)
        if labels is None:
            return HeadOutputs(logits, pooled, sentence_logits)
        assert isinstance(head, (Classifier, SpanHead))  # labels of a vocabulary head took the fused path
        return HeadOutputs(logits, pooled, sentence_logits, *head.loss(logits, labels))

    def init_weights(self) -> None:
        """Initialise every weight, then tie the head to the embeddings if the config asks. Each module type
        initialises its own weights (``init_weights(scheme)`` on the blocks, see ``blocks/init.py``), so the
        init follows what a weight does, not what it is called. Norms start at 1."""
        scheme = InitScheme.of(self.config)
        for module in self.modules():
            if module is not self and hasattr(module, "init_weights"):
                module.init_weights(scheme)
        self.tie_weights()

    def tie_weights(self) -> None:
        head = self.output_projection()
        if head is not None and self.config.tie_embeddings:
            head.weight = self.embeddings.tokens.weight

    def save_pretrained(self, path, format: str = "auto", max_shard_size: int | str = "5GB"):
        """Write config.json, the weights and the tokenization (tokenizer.json, chat template) to the folder
        ``path``: the Hugging Face layout when the architecture has an equivalent (``format="hf"`` insists),
        else trilogy's own format (``format="trilogy"``), which ``trilogy.from_pretrained`` loads too. The
        weights are written one tensor at a time, as shards with an index past ``max_shard_size`` ("5GB",
        "500MiB", or bytes). Returns the folder."""
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

    # --- hook points: reading and changing activations (trilogy.hooks, docs/inside.md) ----------------------

    def hook_points(self) -> dict[str, HookPoint]:
        """Every hook point by its TransformerLens name (``blocks.0.hook_resid_post``; an encoder-decoder's
        prefixed ``encoder.`` / ``decoder.``), stack by stack, layer by layer."""
        from ..hooks import hook_points  # hooks/ reads the models, so it is imported when needed

        return hook_points(self)

    def hooks(self, fwd_hooks: Iterable[tuple[str, Callable[[Tensor, str], Tensor | None]]]
              ) -> AbstractContextManager[TransformerModel]:
        """A context manager that calls each ``fn(activation, name)`` on its hook point in every forward pass and
        decoding step inside the ``with`` block; what a function returns (None: nothing) replaces the
        activation. Removed on exit, after an error too. See ``trilogy.hooks.hooks``."""
        from ..hooks import hooks

        return hooks(self, fwd_hooks)

    def run_with_cache(self, *inputs: Any, names: Iterable[str] | Callable[[str], bool] | None = None,
                       **options: Any) -> tuple[ModelOutput, ActivationCache]:
        """``run(*inputs, **options)`` keeping the activations of the hook points ``names`` (a list, a test on
        a name, or None: all). Returns the ``ModelOutput`` and an ``ActivationCache`` (name -> tensor). See
        ``trilogy.hooks.run_with_cache``."""
        from ..hooks import run_with_cache

        return run_with_cache(self, *inputs, names=names, **options)

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
        self._check_generates()
        raise NotImplementedError  # pragma: no cover - each generating family defines how decoding starts

    def step(self, inputs: StepInputs, cache: KVCache | StaticKVCache) -> tuple[Tensor, KVCache | StaticKVCache]:
        """Feed ``inputs.tokens`` through the output stack with the cache of the tokens before them (and the
        encoder output, for an encoder-decoder). Unlike ``run``, it neither re-checks the tokens (generation
        chose them) nor projects positions other than the last onto the vocabulary.

        Returns:
            the last position's logits (B, V) as float32, and the cache extended by the new tokens.
        """
        stack = self._output_stack
        x = self._output_embeddings(inputs.tokens, inputs.positions, hooks=stack.embedding_hooks)  # (B, T, C)
        out = stack(x, inputs.mask, inputs.positions, context=inputs.context, context_mask=inputs.context_mask,
                    cache=cache, prefix_length=inputs.prefix_length)
        assert self.lm_head is not None  # start() refuses a model that does not generate
        return self.lm_head(out.hidden[:, -1]).float(), out.cache  # (B, V)

    def compiled_step(self) -> Callable[[StepInputs, StaticKVCache], tuple[Tensor, KVCache | StaticKVCache]]:
        """``step`` compiled for a ``StaticKVCache`` (``step_compiler.py``): one graph of fixed shapes, compiled at
        its first call for each batch, capacity and dtype and reused after, its one-row products streamed by
        inductor's own loops. The weights are the graph's inputs: written in place, they are read as they are
        at the next step."""
        if self._compiled is None:
            self._compiled = compile_step(self.step)
        return self._compiled

    def new_cache(self, batch: int, capacity: int, static: bool = False) -> KVCache | StaticKVCache:
        """An empty cache with room for ``capacity`` positions of ``batch`` rows in every layer of the output
        stack (the one ``step`` runs), so that no step up to that length copies it (a sliding layer's: at most
        twice its window). ``static``: a ``StaticKVCache``, whose steps all have the same shapes (a compiled
        step's), for a causal decoder-only stack with full attention and rotary or absolute positions."""
        self._check_generates()
        weight = self.embeddings.tokens.weight
        output = self.structure.output
        if static:
            if output.cross_attention or output.prefix or any(output.windows) or self.config.position == "relative":
                raise TrilogyError("a static KV cache (compile=True) is for causal decoder-only models with full "
                                   "attention and rotary or absolute positions")
            return StaticKVCache.allocate(output.n_layers, batch, self.config.n_kv_heads, capacity,
                                          self.config.d_head, weight.dtype, weight.device)
        return KVCache.allocate(output.n_layers, batch, self.config.n_kv_heads, capacity, self.config.d_head,
                                weight.dtype, weight.device, output.layer_windows)

    @property
    def _output_stack(self) -> TransformerStack:
        return getattr(self, self.structure.output.module)

    @property
    def _output_embeddings(self) -> Embeddings:
        """The embeddings the output stack's input goes through (``embeddings``, or BART's decoder's own)."""
        return getattr(self, self.structure.output.embeddings)

    def _check_generates(self) -> None:
        if not self.structure.output.causal:
            raise TrilogyTypeError(f"generate needs a decoder-only or encoder-decoder model, got "
                                   f"{type(self).__name__} (an encoder-only model predicts masked tokens, it does "
                                   "not continue text)")
        if not self.structure.generates:
            raise TrilogyError(f"generate needs a model with an LM head; this config has head={self.config.head!r}")

    def _check_room(self, what: str, length: int, max_new_tokens: int) -> None:
        """Refuse to decode ``max_new_tokens`` after ``length`` tokens (``what``: "the prompt (12 tokens)")
        past the positions the model has."""
        limit = self._position_limit()
        if limit is None or not max_new_tokens:
            return
        if length >= limit:
            raise TrilogyError(f"{what} already fills the model's {limit} positions (max_seq_len): there is no "
                               "room for a new token")
        if length + max_new_tokens > limit:
            raise TrilogyError(f"{what} + max_new_tokens ({max_new_tokens}) exceed the model's max_seq_len="
                               f"{limit}; ask for at most {limit - length} new tokens")

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

    def _notebook_mask(self, ids: Tensor, attention_mask: Tensor | None, padding_mask: Tensor | None,
                       mask_name: str) -> Tensor | None:
        """The notebook's key-padding mask (True = padding) as an attention mask, else ``attention_mask``."""
        if padding_mask is None:
            return attention_mask
        return self._check(ids, "input_ids", attention_mask, padding_mask, mask_name)

    def forward(self, *args, **kwargs) -> Tensor:  # pragma: no cover - each family defines its own
        raise NotImplementedError


class HeadOutputs(NamedTuple):
    """What ``_head_outputs`` returns; the fields of ``ModelOutput`` with the same names."""

    logits: Tensor | None
    pooled: Tensor | None
    sentence_logits: Tensor | None
    loss: Tensor | None = None
    label_count: Tensor | None = None
    label_correct: Tensor | None = None
