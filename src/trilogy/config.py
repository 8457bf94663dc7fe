"""ModelConfig: one flat dataclass that describes every model trilogy builds, plus named presets.

Choices are strings (``norm="rmsnorm"``) resolved to modules at build time, so a config serialises to JSON as it
is. Derived sizes (``d_head``, ``n_kv_heads``, ``n_decoder_layers``) are filled in by ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrilogyError

ARCHS = ("encoder", "decoder", "encoder-decoder")
NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
LAYER_ATTENTION = ("full", "sliding")  # a layer attends to every key its mask allows, or only to those nearby
POSITIONS = ("learned", "sinusoidal", "relative", "rope", "none")
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")  # sin and cos of each frequency side by side, or every sin first
POOLER_ACTIVATIONS = ("tanh", "relu", "gelu")
POOLINGS = ("first", "mean")  # what the pooler reads: the first token, or the mean of the real tokens
#: the heads each family can carry. Encoder and decoder are adapted to tasks the way each is: a classifier
#: over a summary of the sequence (``sequence-classification``: BERT's pooled first token, a causal model's
#: last real token), one over every position (``token-classification``) and start/end logits per position
#: (``question-answering``, a span). The encoder-decoder has no task heads: T5 does classification, tagging
#: and span extraction text-to-text, the labels, tags and answers written as target text for its LM head.
HEADS = {
    "encoder": ("none", "mlm", "pretraining", "sequence-classification", "token-classification",
                "question-answering"),
    "decoder": ("none", "lm", "sequence-classification", "token-classification", "question-answering"),
    "encoder-decoder": ("none", "lm"),
}
#: what each ``head`` puts on the last stack: an output over the vocabulary (``lm``: a projection; ``mlm``:
#: BERT's dense + norm + projection), a classifier (per ``sequence``, per ``token``, or a ``span``'s start and
#: end per token), BERT's next-sentence classifier, and whether an encoder reads it through the pooler
_HEAD_PARTS: dict[str, dict[str, Any]] = {
    "none": {},
    "lm": {"vocabulary": "lm"},
    "mlm": {"vocabulary": "mlm"},
    "pretraining": {"vocabulary": "mlm", "next_sentence": True, "pooler": True},
    "sequence-classification": {"classifier": "sequence", "pooler": True},
    "token-classification": {"classifier": "token"},
    "question-answering": {"classifier": "span"},
}


@dataclass(frozen=True)
class StackSpec:
    """One stack of layers: its role (``encoder`` reads the input, ``decoder`` writes the output), the model
    attribute that holds it, its depth, how its self-attention is masked (``bidirectional``, ``causal``, or
    ``prefix``: bidirectional over each row's prefix and causal after it, T5's prefix LM), whether its
    layers cross-attend to the encoder's output, which of its layers attend through a sliding window, and which
    embeddings its input goes through."""

    name: str
    module: str
    n_layers: int
    attention: str
    cross_attention: bool = False
    layer_windows: tuple[int | None, ...] = ()  # each layer's sliding window (None: full attention); (): all full
    embeddings: str = "embeddings"  # the model attribute of the Embeddings its input goes through

    @property
    def windows(self) -> tuple[int | None, ...]:
        """Each layer's sliding window: a query reaches the keys less than ``window`` positions away (see
        ``ModelConfig.sliding_window``); None = every key its mask allows."""
        return self.layer_windows or (None,) * self.n_layers

    @property
    def causal(self) -> bool:
        """No token sees the tokens after it, except inside a prefix: the stack generates with a KV cache."""
        return self.attention in ("causal", "prefix")

    @property
    def prefix(self) -> bool:
        """Each row's prefix (``prefix_length`` tokens) is read bidirectionally."""
        return self.attention == "prefix"


@dataclass(frozen=True)
class Structure:
    """The shape of a family, derived from a config (``ModelConfig.structure``): its stacks in the order a
    forward pass runs them, and what sits on the last one. Models build from it; sizing, the converters, the
    explorer and the data code read it instead of asking which family a config is."""

    stacks: tuple[StackSpec, ...]
    vocabulary: str | None = None  # "lm" | "mlm": the head over the vocabulary, if any
    classifier: str | None = None  # "sequence" | "token" | "span"
    next_sentence: bool = False
    pooler: bool = False
    summary: str | None = None  # what the sequence classifier reads: "pooler" (BERT's pooled first token) | "last"
    #   (each row's last real token)

    @property
    def bare_classifier(self) -> bool:
        """The sequence classifier is a bare linear, without dropout or bias, where it reads the last real
        token (GPT-2's and Llama's ``score``); BERT's and the per-token classifiers have both."""
        return self.summary == "last"

    @property
    def output(self) -> StackSpec:
        """The stack whose output the head reads."""
        return self.stacks[-1]

    @property
    def has_source(self) -> bool:
        """A separate source sequence (encoder-decoder): the output stack cross-attends to the encoder."""
        return self.output.cross_attention

    @property
    def generates(self) -> bool:
        """Continues text token by token: a causal output stack with a head over the vocabulary."""
        return self.output.causal and self.vocabulary is not None


@dataclass
class ModelConfig:
    """Sizes and architectural choices of one model.

    ``arch`` picks the family: ``encoder`` (BERT-style), ``decoder`` (GPT-style; with ``prefix_lm`` the prefix
    LM of the T5 paper) or ``encoder-decoder`` (T5-style). ``head`` picks what sits on top (``HEADS`` lists each
    family's): an LM/MLM head or a task head (forward returns logits), or ``none`` (forward returns hidden
    states).
    """

    arch: str
    vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 6
    d_ff: int = 2048
    max_seq_len: int = 512
    d_head: int | None = None  # default d_model // n_heads; T5 sets it independently (d_kv)
    n_kv_heads: int | None = None  # grouped-query attention when < n_heads
    n_decoder_layers: int | None = None  # encoder-decoder only; default n_layers
    prefix_lm: bool = False  # decoder only: self-attention bidirectional over a prefix (T5's prefix LM)
    # layers
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_bias: bool = True
    norm_weight_offset: float = 0.0  # RMSNorm scales by (offset + weight): Gemma stores weight - 1 and uses 1.0
    norm_position: str = "pre"
    final_norm: bool = True  # a norm after the last layer of each stack
    first_attention_norm: bool = True  # layer 0 norms its attention input; False: it reads the embeddings as they
    #   come (ModernBERT: they were just normed by embedding_norm); pre-norm only
    parallel_residual: bool = False  # x + attn(norm1(x)) + mlp(norm2(x)): both branches read the layer's input
    #   (GPT-NeoX/Pythia's use_parallel_residual); pre-norm, without cross-attention
    sandwich_norm: bool = False  # a norm on each branch's output too, before it is added (Gemma 2's
    #   post_attention_layernorm and post_feedforward_layernorm); pre-norm only
    activation: str = "gelu"
    gated_mlp: bool = False  # GEGLU / SwiGLU / T5 v1.1 gated-GELU
    bias: bool = True  # biases of the attention and MLP projections, and of the dense layer of the MLM head, the
    #   pooler and the head transform
    qkv_bias: bool | None = None  # biases of the q/k/v projections alone; default ``bias`` (Qwen2: True, bias False)
    qk_norm: bool = False  # the config's norm over each head's d_head, on q and k before rotary (Qwen3)
    sliding_window: int | None = None  # a sliding layer's query reaches the keys less than this many positions
    #   away: itself and the window - 1 before it (bidirectional stacks: and after it); its KV cache keeps those
    layer_attention: tuple[str, ...] | None = None  # per layer "full" | "sliding" (encoder-decoder: the encoder's
    #   layers, then the decoder's); None: every layer "sliding" when sliding_window is set, else "full"
    attention_scale: float | None = None  # default d_head ** -0.5; T5 uses 1.0
    attention_softcap: float | None = None  # scaled scores become tanh(s / cap) * cap before masking (Gemma 2);
    #   attention then takes the explicit path, not SDPA
    dropout: float = 0.1
    # positions and embeddings
    position: str = "learned"
    rope_theta: float = 10000.0
    rope_linear_factor: float = 1.0  # linear RoPE scaling: the rope_theta table turns position p by p / factor's
    #   angles (rope_type "linear"; Gemma 3 4B+'s global layers: 8)
    rope_theta_local: float | None = None  # the sliding-window layers' own rotary base, unscaled (Gemma 3's
    #   rope_local_base_freq, ModernBERT's local_rope_theta); None: they share rope_theta's table
    rotary_fraction: float = 1.0  # rotary on the first int(d_head * fraction) dims of each head, the rest
    #   unrotated (GPT-NeoX's rotary_pct, Phi-3's partial_rotary_factor); see ``rotary_dims``
    position_offset: int = 0  # learned positions: the table row position 0 reads (RoBERTa, XLM-R: pad_token_id + 1,
    #   past the padding row); the table has position_offset + max_seq_len rows
    positions_from_mask: bool = False  # encoder: position ids count each row's real tokens, so a left-padded row
    #   starts at its first real token, and padding reads the row before position 0 (RoBERTa, XLM-R: the padding
    #   index's; needs position_offset >= 1); False: 0..T-1, padding or not (BERT). Decoders always count
    sinusoidal_layout: str = "interleaved"  # sinusoidal positions: sin and cos of each frequency side by side (the
    #   notebook's), or "halves": the sin of every frequency, then the cos of every one (Marian)
    relative_buckets: int = 32
    relative_max_distance: int = 128
    type_vocab_size: int = 0  # BERT token types
    embedding_norm: bool = False  # BERT: LayerNorm after the embeddings
    embeddings_per_stack: bool = False  # encoder-decoder: each stack adds its own position table and embedding norm
    #   to the one token table (BART); False: both stacks go through the same embeddings (T5, Marian, the notebook)
    embedding_scale: float = 1.0  # the notebook multiplies embeddings by sqrt(d_model)
    # heads
    head: str = "lm"
    tie_embeddings: bool = True
    head_scale: float = 1.0  # T5 v1.0 scales the decoder output by d_model ** -0.5 before the tied head
    head_bias: bool = False  # a bias on the LM head
    logit_softcap: float | None = None  # the LM head's logits become tanh(z / cap) * cap (Gemma 2's
    #   final_logit_softcapping), in the fused loss too
    pooler: bool = False  # BERT pooler (dense + tanh on the first token)
    pooler_activation: str = "tanh"  # the pooler's: tanh (BERT; RoBERTa's classification head), relu (DistilBERT's
    #   pre_classifier), gelu (ModernBERT's head)
    pooling: str = "first"  # what the pooler reads: the "first" token (BERT) or the "mean" of each row's real tokens
    #   (ModernBERT's classifier_pooling "mean")
    head_transform: bool = False  # ModernBERT's head: the pooler's dense + activation end in the config's norm, and
    #   the per-token and span classifiers read every token through a dense + pooler_activation + norm of their own
    num_labels: int = 2
    # special tokens
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    # free-form provenance (source config.json, HF architecture name, ...)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("norm_position", self.norm_position, NORM_POSITIONS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("position", self.position, POSITIONS)
        _check_choice("pooler_activation", self.pooler_activation, POOLER_ACTIVATIONS)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("sinusoidal_layout", self.sinusoidal_layout, SINUSOIDAL_LAYOUTS)
        _check_choice(f"head (for arch {self.arch!r})", self.head, HEADS[self.arch])
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise TrilogyError(f"{name} must be a positive integer, got {value!r}")
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise TrilogyError(
                    f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}), "
                    "or give d_head explicitly"
                )
            self.d_head = self.d_model // self.n_heads
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.n_kv_heads <= 0 or self.n_heads % self.n_kv_heads:
            raise TrilogyError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if not isinstance(self.prefix_lm, bool):
            raise TrilogyError(f"prefix_lm must be true or false, got {self.prefix_lm!r}")
        if self.prefix_lm and self.arch != "decoder":
            raise TrilogyError(f"prefix_lm makes a decoder a prefix LM; arch {self.arch!r} cannot be one")
        if self.arch == "encoder-decoder" and self.n_decoder_layers is None:
            self.n_decoder_layers = self.n_layers
        if self.qkv_bias is None:
            self.qkv_bias = self.bias
        self._check_layer_attention()
        if not isinstance(self.position_offset, int) or isinstance(self.position_offset, bool) \
                or self.position_offset < 0:
            raise TrilogyError(f"position_offset must be a non-negative integer, got {self.position_offset!r}")
        if self.position_offset and self.position != "learned":
            raise TrilogyError(f"position_offset shifts a learned position table; position is {self.position!r}")
        if self.positions_from_mask and (self.arch != "encoder" or not self.position_offset):
            raise TrilogyError("positions_from_mask is for an encoder-only model with a position_offset (padding "
                               "reads the row before position 0); decoders always number real tokens only")
        if (self.rope_theta_local is not None or self.rope_linear_factor != 1.0) and self.position != "rope":
            raise TrilogyError(f"rope_theta_local and rope_linear_factor apply to rotary positions; position is "
                               f"{self.position!r}")
        if not self.rope_linear_factor > 0:
            raise TrilogyError(f"rope_linear_factor must be positive, got {self.rope_linear_factor!r}")
        if self.embeddings_per_stack and self.arch != "encoder-decoder":
            raise TrilogyError(f"embeddings_per_stack gives each stack of an encoder-decoder its own positions; arch "
                               f"{self.arch!r} has one stack")
        if not 0.0 < self.rotary_fraction <= 1.0:
            raise TrilogyError(f"rotary_fraction must be in (0, 1], got {self.rotary_fraction}")
        if self.rotary_fraction != 1.0 and self.position != "rope":
            raise TrilogyError(f"rotary_fraction applies to rotary positions; position is {self.position!r}")
        if self.position == "rope" and (self.rotary_dims % 2 or not self.rotary_dims):
            raise TrilogyError(f"rotary positions need an even, non-zero number of rotated dims; d_head "
                               f"{self.d_head} * rotary_fraction {self.rotary_fraction} gives {self.rotary_dims}")
        if self.norm_weight_offset and self.norm != "rmsnorm":
            raise TrilogyError(f"norm_weight_offset applies to RMSNorm; norm is {self.norm!r}")
        for name, used in (("parallel_residual", self.parallel_residual), ("sandwich_norm", self.sandwich_norm),
                           ("first_attention_norm=False", not self.first_attention_norm)):
            if used and self.norm_position != "pre":
                raise TrilogyError(f"{name} needs pre-norm layers (norm_position='pre')")
        if self.parallel_residual and self.arch == "encoder-decoder":
            raise TrilogyError("parallel_residual has no place for cross-attention: it is for encoder-only or "
                               "decoder-only models")
        for name in ("attention_softcap", "logit_softcap"):
            cap = getattr(self, name)
            if cap is not None and not cap > 0:
                raise TrilogyError(f"{name} must be a positive number or None, got {cap!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise TrilogyError(f"dropout must be in [0, 1), got {self.dropout}")

    def _check_layer_attention(self) -> None:
        window = self.sliding_window
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window <= 0):
            raise TrilogyError(f"sliding_window must be a positive integer or None, got {window!r}")
        if self.layer_attention is None:
            return
        self.layer_attention = tuple(self.layer_attention)  # a JSON list
        for kind in self.layer_attention:
            _check_choice("layer_attention entries", kind, LAYER_ATTENTION)
        layers = self.n_layers + (self.n_decoder_layers or 0)
        if len(self.layer_attention) != layers:
            raise TrilogyError(f"layer_attention has {len(self.layer_attention)} entries, the model has {layers} "
                               "layers")
        if window is None and "sliding" in self.layer_attention:
            raise TrilogyError("layer_attention has sliding layers but sliding_window is not set")

    @property
    def layer_windows(self) -> tuple[int | None, ...]:
        """Each layer's sliding window, None for full attention (encoder-decoder: the encoder's, then the
        decoder's)."""
        layers = self.n_layers + (self.n_decoder_layers or 0)
        kinds = self.layer_attention or ("sliding" if self.sliding_window else "full",) * layers
        return tuple(self.sliding_window if kind == "sliding" else None for kind in kinds)

    @property
    def scale(self) -> float:
        """The factor applied to q.k scores."""
        return self.d_head**-0.5 if self.attention_scale is None else self.attention_scale

    @property
    def rotary_dims(self) -> int:
        """How many leading dims of each head the rotary angles turn (all of d_head unless ``rotary_fraction``
        says fewer), computed as transformers computes it."""
        return int(self.d_head * self.rotary_fraction)

    @property
    def has_lm_head(self) -> bool:
        return self.structure.vocabulary is not None

    @property
    def structure(self) -> Structure:
        """Which stacks this config's family has and what sits on them (see ``Structure``)."""
        windows = self.layer_windows
        first, second = (_sliding_only(part) for part in (windows[:self.n_layers], windows[self.n_layers:]))
        if self.arch == "encoder":
            stacks: tuple[StackSpec, ...] = (StackSpec("encoder", "stack", self.n_layers, "bidirectional",
                                                       layer_windows=first),)
        elif self.arch == "decoder":
            stacks = (StackSpec("decoder", "stack", self.n_layers, "prefix" if self.prefix_lm else "causal",
                                layer_windows=first),)
        else:
            stacks = (StackSpec("encoder", "encoder", self.n_layers, "bidirectional", layer_windows=first),
                      StackSpec("decoder", "decoder", self.n_decoder_layers, "causal", cross_attention=True,
                                layer_windows=second,
                                embeddings="decoder_embeddings" if self.embeddings_per_stack else "embeddings"))
        parts = _HEAD_PARTS[self.head]
        # BERT checkpoints carry a pooler whatever their head; only an encoder reads its first token, a causal
        # stack sums a sequence up in its last real token
        reads_first = stacks[-1].name == "encoder"
        pooler = reads_first and (self.pooler or parts.get("pooler", False))
        summary = ("pooler" if reads_first else "last") if parts.get("classifier") == "sequence" else None
        return Structure(stacks, parts.get("vocabulary"), parts.get("classifier"),
                         parts.get("next_sentence", False), pooler, summary)

    # --- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrilogyError(f"unknown ModelConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ModelConfig:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed; derived fields are recomputed unless given."""
        data = self.to_dict()
        if "d_model" in changes or "n_heads" in changes:
            data["d_head"] = None
        if "n_heads" in changes:
            data["n_kv_heads"] = None
        if "n_layers" in changes:
            data["n_decoder_layers"] = None
        if "bias" in changes and self.qkv_bias == self.bias:
            data["qkv_bias"] = None  # it followed bias, and still does
        if "d_model" in changes and self.head_scale != 1.0 and abs(self.head_scale - self.d_model**-0.5) < 1e-12:
            data["head_scale"] = changes["d_model"] ** -0.5  # T5 v1.0's scale follows the width
        data.update(changes)
        return ModelConfig.from_dict(data)

    @classmethod
    def from_preset(cls, name: str, **changes: Any) -> ModelConfig:
        """A named preset (see ``PRESETS``), optionally with some fields changed."""
        if name not in PRESETS:
            raise TrilogyError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
        data = {k: v for k, v in PRESETS[name].items() if k != "source"}
        data["extra"] = {"preset": name, "source": PRESETS[name].get("source")}
        config = cls.from_dict(data)
        return config.replace(**changes) if changes else config

    @classmethod
    def notebook(cls, arch: str, vocab_size: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 max_seq_len: int) -> ModelConfig:
        """The configuration behind the notebook's classes: sinusoidal positions, embeddings scaled by
        sqrt(d_model), ReLU MLPs, dropout 0.1 (as ``nn.Transformer*Layer``), with each family wired the way its
        real architecture is: post-norm encoder layers with the notebook's final LayerNorm; a pre-norm GPT
        with causal self-attention only and a tied head; an encoder-decoder whose decoder cross-attends to the
        encoder output with source padding masked."""
        if not isinstance(d_model, int) or not isinstance(n_heads, int) or n_heads <= 0 or d_model % n_heads:
            raise TrilogyError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        return cls(
            arch=arch, vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff,
            max_seq_len=max_seq_len, position="sinusoidal", embedding_scale=d_model**0.5, activation="relu",
            norm_position="pre" if arch == "decoder" else "post", final_norm=True,
            head="none" if arch == "encoder" else "lm", dropout=0.1, extra={"preset": "notebook"},
        )


def _sliding_only(windows: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """A stack's ``layer_windows``: () when every layer attends fully."""
    return windows if any(w is not None for w in windows) else ()


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TrilogyError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


_BERT = dict(
    arch="encoder", vocab_size=30522, max_seq_len=512, type_vocab_size=2, norm_eps=1e-12, norm_position="post",
    final_norm=False, embedding_norm=True, activation="gelu", position="learned", head="none", pooler=True,
    pad_token_id=0, dropout=0.1,
)
_GPT2 = dict(
    arch="decoder", vocab_size=50257, max_seq_len=1024, norm_eps=1e-5, activation="gelu_tanh",
    position="learned", head="lm", bos_token_id=50256, eos_token_id=50256, dropout=0.1,
)
_T5 = dict(
    arch="encoder-decoder", vocab_size=32128, d_head=64, max_seq_len=512, norm="rmsnorm", norm_eps=1e-6,
    norm_bias=False, bias=False, activation="relu", attention_scale=1.0, position="relative", head="lm",
    relative_buckets=32, relative_max_distance=128, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    dropout=0.1,
)
_LLAMA = dict(
    arch="decoder", norm="rmsnorm", norm_eps=1e-6, norm_bias=False, bias=False, activation="silu",
    gated_mlp=True, position="rope", head="lm", dropout=0.0,
)

#: the tiny preset of each family, for tests, tours and small runs
TINY_PRESETS = {"encoder": "tiny-bert", "decoder": "tiny-gpt2", "encoder-decoder": "tiny-t5"}

#: Named presets. Each lists the config.json it reproduces; the parameter counts are asserted in tests.
PRESETS: dict[str, dict[str, Any]] = {
    "bert-base-uncased": dict(_BERT, d_model=768, n_heads=12, n_layers=12, d_ff=3072,
                              source="https://huggingface.co/bert-base-uncased/blob/main/config.json"),
    "bert-large-uncased": dict(_BERT, d_model=1024, n_heads=16, n_layers=24, d_ff=4096,
                               source="https://huggingface.co/bert-large-uncased/blob/main/config.json"),
    "gpt2": dict(_GPT2, d_model=768, n_heads=12, n_layers=12, d_ff=3072,
                 source="https://huggingface.co/gpt2/blob/main/config.json"),
    "gpt2-medium": dict(_GPT2, d_model=1024, n_heads=16, n_layers=24, d_ff=4096,
                        source="https://huggingface.co/gpt2-medium/blob/main/config.json"),
    "t5-small": dict(_T5, d_model=512, n_heads=8, n_layers=6, d_ff=2048, head_scale=512**-0.5,
                     source="https://huggingface.co/t5-small/blob/main/config.json"),
    "t5-base": dict(_T5, d_model=768, n_heads=12, n_layers=12, d_ff=3072, head_scale=768**-0.5,
                    source="https://huggingface.co/t5-base/blob/main/config.json"),
    "flan-t5-small": dict(_T5, d_model=512, n_heads=6, n_layers=8, d_ff=1024, activation="gelu_tanh",
                          gated_mlp=True, tie_embeddings=False,
                          source="https://huggingface.co/google/flan-t5-small/blob/main/config.json"),
    # tiny presets for tests and demos: a few hundred thousand parameters
    "tiny-bert": dict(_BERT, vocab_size=1024, d_model=64, n_heads=4, n_layers=2, d_ff=256, max_seq_len=128,
                      head="mlm", pooler=False, source="trilogy"),
    "tiny-gpt2": dict(_GPT2, vocab_size=1024, d_model=64, n_heads=4, n_layers=2, d_ff=256, max_seq_len=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, source="trilogy"),
    "tiny-prefix-lm": dict(_GPT2, vocab_size=1024, d_model=64, n_heads=4, n_layers=2, d_ff=256, max_seq_len=128,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0, prefix_lm=True, source="trilogy"),
    "tiny-t5": dict(_T5, vocab_size=1024, d_model=64, d_head=16, n_heads=4, n_layers=2, d_ff=256,
                    max_seq_len=128, head_scale=64**-0.5, source="trilogy"),
    "tiny-llama": dict(_LLAMA, vocab_size=1024, d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=192,
                       max_seq_len=128, tie_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                       source="trilogy"),
}
