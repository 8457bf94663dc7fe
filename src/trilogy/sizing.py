"""Parameters, FLOPs and memory of a model, computed from its config alone.

Everything is counted the way trilogy's own modules run, so the numbers can be checked: parameters against
``sum(p.numel())`` of a built model, FLOPs against ``torch.utils.flop_counter.FlopCounterMode`` (which
counts matrix multiplications: 2 FLOPs per multiply-add; norms, softmax and activations are not counted), and
memory against the measured peak of a real training or inference step (see ``tests/test_sizing.py``).

Conventions:
- FLOPs per token divide a step's FLOPs by the tokens it processes (source + target for encoder-decoder).
  Attention FLOPs count every query-key pair (SDPA and the explicit path compute the full T x S scores even
  when half of them are masked). Training = forward + backward = 3 x forward (the backward pass computes a
  gradient for each matmul's input and for its weight).
- Memory: weights, gradients and AdamW's two moment buffers in the model dtype; activations are the tensors
  autograd saves for backward (training) or the largest set alive at once (inference). Dropout keeps a mask
  of the activation dtype per dropout call (PyTorch's CPU kernel). ``attention="sdpa"`` assumes a fused kernel
  that never materialises the (B, H, T, S) scores; ``"explicit"`` keeps them (``return_attention=True``, and
  what SDPA falls back to on CPU when attention dropout is on).

Legend: B batch, T target length, S source length, C d_model, A = H * D attention width, G = K * D key/value
width, F d_ff, V vocabulary, N tokens (B * T).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ATTENTION_PATHS = ("sdpa", "explicit")


@dataclass(frozen=True)
class Stack:
    """One stack of layers as the sizing sees it: its name, depth, query and key lengths."""

    name: str
    n_layers: int
    query_len: int
    key_len: int
    cross_len: int = 0  # source length its cross-attention reads (decoder of an encoder-decoder), else 0


def stacks(config: ModelConfig, seq: int, src: int | None = None) -> list[Stack]:
    """The stacks a forward pass runs for ``seq`` target tokens (``src`` source tokens for encoder-decoder)."""
    if config.arch != "encoder-decoder":
        return [Stack(config.arch, config.n_layers, seq, seq)]
    src = seq if src is None else src
    return [Stack("encoder", config.n_layers, src, src),
            Stack("decoder", config.n_decoder_layers, seq, seq, cross_len=src)]


# --- parameters ---------------------------------------------------------------------------------------------

def _linear(d_in: int, d_out: int, bias: bool) -> int:
    return d_in * d_out + (d_out if bias else 0)


def _norm(config: ModelConfig, width: int | None = None) -> int:
    width = width or config.d_model
    return width * (2 if config.norm == "layernorm" and config.norm_bias else 1)


def _widths(config: ModelConfig) -> tuple[int, int, int, int]:
    """(C, A, G, F)."""
    return config.d_model, config.n_heads * config.d_head, config.n_kv_heads * config.d_head, config.d_ff


def layer_parameters(config: ModelConfig, cross: bool) -> dict[str, int]:
    """One layer's parameters keyed by part."""
    c, a, g, f = _widths(config)
    parts = {
        "attention/qkv": _linear(c, a + 2 * g, config.bias),
        "attention/out": _linear(a, c, config.bias),
        "attention/norm": _norm(config),
    }
    if cross:
        parts.update({
            "cross_attention/q": _linear(c, a, config.bias),
            "cross_attention/kv": _linear(c, 2 * g, config.bias),
            "cross_attention/out": _linear(a, c, config.bias),
            "cross_attention/norm": _norm(config),
        })
    parts["mlp/up"] = _linear(c, f, config.bias)
    if config.gated_mlp:
        parts["mlp/gate"] = _linear(c, f, config.bias)
    parts["mlp/down"] = _linear(f, c, config.bias)
    parts["mlp/norm"] = _norm(config)
    return parts


def parameter_breakdown(config: ModelConfig) -> dict[str, int]:
    """Every parameter of the model built from ``config``, keyed like ``"decoder/attention/qkv"`` (summed over
    layers). Tied weights are counted once, under ``embeddings/tokens``."""
    c, v = config.d_model, config.vocab_size
    parts = {"embeddings/tokens": v * c}
    if config.position == "learned":
        parts["embeddings/positions"] = config.max_seq_len * c
    if config.type_vocab_size:
        parts["embeddings/token_types"] = config.type_vocab_size * c
    if config.embedding_norm:
        parts["embeddings/norm"] = _norm(config)
    for stack in stacks(config, 1):
        for key, count in layer_parameters(config, cross=bool(stack.cross_len)).items():
            parts[f"{stack.name}/{key}"] = count * stack.n_layers
        if config.position == "relative":
            parts[f"{stack.name}/relative_bias"] = config.relative_buckets * config.n_heads
        if config.final_norm:
            parts[f"{stack.name}/final_norm"] = _norm(config)
    tied = config.tie_embeddings
    if config.head == "lm":
        parts["head/lm"] = (0 if tied else c * v) + (v if config.head_bias else 0)
    if config.head in ("mlm", "pretraining"):
        parts["head/mlm"] = _linear(c, c, True) + 2 * c + (0 if tied else c * v) + v
    if config.arch == "encoder" and (config.pooler or config.head in ("pretraining", "sequence-classification")):
        parts["head/pooler"] = _linear(c, c, True)
    if config.head == "pretraining":
        parts["head/next_sentence"] = _linear(c, 2, True)
    if config.head in ("sequence-classification", "token-classification"):
        parts["head/classifier"] = _linear(c, config.num_labels, True)
    return parts


def count_parameters(config: ModelConfig) -> int:
    return sum(parameter_breakdown(config).values())


# --- FLOPs --------------------------------------------------------------------------------------------------

def flops_breakdown(config: ModelConfig, batch: int, seq: int, src: int | None = None) -> dict[str, int]:
    """Forward-pass FLOPs of one step (2 per multiply-add), keyed by part and summed over layers."""
    c, a, g, f = _widths(config)
    parts: dict[str, int] = {}
    for stack in stacks(config, seq, src):
        n = batch * stack.query_len
        attention_core = 4 * batch * config.n_heads * stack.query_len * stack.key_len * config.d_head
        layer = {
            "attention/projections": 2 * n * (c * (a + 2 * g) + a * c),
            "attention/scores": attention_core,  # q @ k^T and weights @ v
            "mlp": 2 * n * c * f * (3 if config.gated_mlp else 2),
        }
        if stack.cross_len:
            layer["cross_attention/projections"] = 2 * n * 2 * a * c + 2 * batch * stack.cross_len * c * 2 * g
            layer["cross_attention/scores"] = 4 * batch * config.n_heads * stack.query_len * stack.cross_len * \
                config.d_head
        for key, value in layer.items():
            parts[f"{stack.name}/{key}"] = value * stack.n_layers
    n, v = batch * seq, config.vocab_size
    if config.head == "lm":
        parts["head/lm"] = 2 * n * c * v
    if config.head in ("mlm", "pretraining"):
        parts["head/mlm"] = 2 * n * (c * c + c * v)
    if config.arch == "encoder" and (config.pooler or config.head in ("pretraining", "sequence-classification")):
        parts["head/pooler"] = 2 * batch * c * c
    if config.head == "pretraining":
        parts["head/next_sentence"] = 2 * batch * c * 2
    if config.head == "sequence-classification":
        parts["head/classifier"] = 2 * batch * c * config.num_labels
    if config.head == "token-classification":
        parts["head/classifier"] = 2 * n * c * config.num_labels
    return parts


def tokens_per_step(config: ModelConfig, batch: int, seq: int, src: int | None = None) -> int:
    return batch * sum(s.query_len for s in stacks(config, seq, src))


# --- memory -------------------------------------------------------------------------------------------------

def _layer_saved(config: ModelConfig, batch: int, stack: Stack, attention: str, dropout: bool) -> int:
    """Elements one layer saves for backward (activation dtype; norm statistics in fp32 are counted alike)."""
    c, a, g, f = _widths(config)
    n = batch * stack.query_len
    stats = 2 if config.norm == "layernorm" else 1
    noise = 1 if dropout else 0  # one mask per dropout call, as large as its input

    def attention_core(query_len: int, key_len: int, kv_tokens: int, learned_bias: bool) -> int:
        scores = batch * config.n_heads * query_len * key_len
        if attention == "explicit" or learned_bias:
            # (a learned bias, T5's, needs a gradient, which fused kernels do not give: SDPA runs its math path)
            # contiguous copies of q, k, v for the matmuls; softmax output (+ dropout mask and result)
            return n * a + 2 * kv_tokens * g + scores * (1 + 2 * noise)
        # fused kernel: q, k, v (views of the projection), output, log-sum-exp per query
        return n * a + 2 * kv_tokens * g + n * a + batch * config.n_heads * query_len

    # a sublayer saves its norm's input and statistics, the projection's input, and a residual-dropout mask
    sublayer = 2 * n * c + stats * n + noise * n * c
    relative = config.position == "relative"
    saved = sublayer + attention_core(stack.query_len, stack.key_len, n, relative) + n * a  # + out-proj input
    if config.position == "rope":
        saved += n * (a + g)  # rotated q and k are new tensors
    if config.n_kv_heads != config.n_heads:
        saved += 2 * n * (a - g)  # keys and values repeated to every query head
    if stack.cross_len:
        saved += sublayer + attention_core(stack.query_len, stack.cross_len, batch * stack.cross_len, False) + n * a
    hidden = (4 if config.gated_mlp else 2) + noise  # activation input/output (+ gate, up, product) + mask
    saved += sublayer + hidden * n * f
    return saved


def attention_map_elements(config: ModelConfig, batch: int, seq: int, src: int | None) -> int:
    """Elements of every layer's (B, H, T, S) attention weights: self, and cross for encoder-decoder."""
    return sum(batch * config.n_heads * s.n_layers * s.query_len * (s.key_len + s.cross_len)
               for s in stacks(config, seq, src))


def activation_bytes(config: ModelConfig, batch: int, seq: int, src: int | None, dtype_bytes: int,
                     training: bool, attention: str = "sdpa") -> int:
    """Training: the bytes autograd holds for backward at the end of the forward pass, plus the logits and
    their gradients alive at the start of backward. Inference: the largest set of tensors alive at once (plus
    every layer's attention weights on the explicit path, which returns them)."""
    c, a, g, f = _widths(config)
    v, n = config.vocab_size, batch * seq
    head_width = v if config.has_lm_head else (config.num_labels if config.head != "none" else 0)
    all_stacks = stacks(config, seq, src)
    if not training:
        widest = 0
        for stack in all_stacks:
            m = batch * stack.query_len
            keys = max(stack.key_len, stack.cross_len)
            scores = batch * config.n_heads * stack.query_len * keys if attention == "explicit" else 0
            if config.position == "relative":  # the stack's bias and its masked copy, (1, H, T, S) each
                scores += 2 * config.n_heads * stack.query_len * stack.key_len
            layer = m * (2 * c + max(a + 2 * g + a, (3 if config.gated_mlp else 2) * f)) + scores
            # the stack returns every layer's keys and values, so they stay alive until it finishes
            kept_kv = stack.n_layers * 2 * g * (m + batch * stack.cross_len)
            widest = max(widest, layer + kept_kv + batch * stack.cross_len * c)
        head = n * c * (2 if config.head_scale != 1.0 or config.head in ("mlm", "pretraining") else 1)
        kept_maps = attention_map_elements(config, batch, seq, src) if attention == "explicit" else 0
        return dtype_bytes * (max(widest, head + n * head_width) + kept_maps)
    dropout = config.dropout > 0
    stats = 2 if config.norm == "layernorm" else 1
    saved = 0
    for stack in all_stacks:
        m = batch * stack.query_len
        saved += stack.n_layers * _layer_saved(config, batch, stack, attention, dropout)
        saved += m * c * (1 if dropout else 0)  # embedding dropout mask
        if config.embedding_norm:
            saved += m * c + stats * m
        if config.final_norm:
            saved += m * c + stats * m
    if config.head in ("mlm", "pretraining"):
        saved += 4 * n * c + 2 * n  # dense input, GELU input, LayerNorm input and stats, decoder input
    elif head_width:
        saved += n * c
    # the loss keeps the log-probabilities; at the start of backward the logits and two gradients are alive
    saved += 4 * n * head_width
    return dtype_bytes * saved


def kv_cache_bytes(config: ModelConfig, batch: int, seq: int, src: int | None, dtype_bytes: int
                   ) -> dict[str, int]:
    """Keys and values a generation cache holds after ``seq`` target tokens (and ``src`` source tokens)."""
    if config.arch == "encoder":
        return {"self": 0, "cross": 0}
    g = config.n_kv_heads * config.d_head
    layers = config.n_decoder_layers if config.arch == "encoder-decoder" else config.n_layers
    cross = 2 * batch * g * (src or seq) * layers if config.arch == "encoder-decoder" else 0
    return {"self": dtype_bytes * 2 * batch * g * seq * layers, "cross": dtype_bytes * cross}


def memory_breakdown(config: ModelConfig, batch: int, seq: int, src: int | None = None, dtype: str = "fp32",
                     training: bool = True, attention: str = "sdpa") -> dict[str, int]:
    """Bytes of one training step (AdamW) or one inference forward pass, by part, and their peak ``total``.

    Training peaks either at the start of backward (weights, activations, and up to all the gradients) or in
    the optimizer step (weights, gradients, moments, and AdamW's temporaries, about one more copy of the
    gradients).
    """
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if attention not in ATTENTION_PATHS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_PATHS)}, got {attention!r}")
    size = DTYPE_BYTES[dtype]
    params = count_parameters(config) * size
    cache = kv_cache_bytes(config, batch, seq, src, size)
    maps = size * attention_map_elements(config, batch, seq, src)
    memory = {
        "weights": params,
        "gradients": params if training else 0,
        "optimizer": 2 * params if training else 0,
        "activations": activation_bytes(config, batch, seq, src, size, training, attention),
        "attention_maps": maps,
        "kv_cache": 0 if training else cache["self"] + cache["cross"],
        "kv_cache_self": 0 if training else cache["self"],
        "kv_cache_cross": 0 if training else cache["cross"],
    }
    if training:
        backward_start = memory["activations"] + memory["gradients"]
        optimizer_step = memory["gradients"] + memory["optimizer"] + params
        memory["total"] = params + max(backward_start, optimizer_step)
    else:
        memory["total"] = params + memory["activations"]
    return memory


# --- the whole report ---------------------------------------------------------------------------------------

def size_report(config: ModelConfig, batch: int = 1, seq: int | None = None, src: int | None = None,
                dtype: str = "fp32", training: bool = True, attention: str = "sdpa") -> dict:
    """Parameters, FLOPs per token (forward and training) and memory for ``batch`` sequences of ``seq``
    tokens (default: the config's ``max_seq_len``; ``src`` source tokens for encoder-decoder)."""
    seq = config.max_seq_len if seq is None else seq
    for name, value in (("batch", batch), ("seq", seq), ("src", src if src is not None else 1)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    if config.position in ("learned", "sinusoidal") and max(seq, src or 0) > config.max_seq_len:
        raise ValueError(f"this model's positions stop at max_seq_len={config.max_seq_len}; "
                         f"--seq/--src {max(seq, src or 0)} is longer")
    if config.arch != "encoder-decoder" and src is not None:
        raise ValueError(f"--src applies to encoder-decoder models; this one is {config.arch!r}")
    flops = flops_breakdown(config, batch, seq, src)
    forward = sum(flops.values())
    tokens = tokens_per_step(config, batch, seq, src)
    return {
        "arch": config.arch,
        "preset": config.extra.get("preset"),
        "workload": {"batch": batch, "seq": seq, "src": src if config.arch == "encoder-decoder" else None,
                     "dtype": dtype, "mode": "training" if training else "inference", "attention": attention},
        "params": count_parameters(config),
        "params_breakdown": parameter_breakdown(config),
        "flops_per_step": {"forward": forward, "training": 3 * forward},
        "flops_per_token": {"forward": forward / tokens, "training": 3 * forward / tokens},
        "flops_breakdown": flops,
        "memory_bytes": memory_breakdown(config, batch, seq, src, dtype, training, attention),
    }
