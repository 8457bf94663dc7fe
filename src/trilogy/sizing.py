"""Parameters, FLOPs and memory of a model, computed from its config alone.

Everything is counted the way trilogy's own modules run, so the numbers can be checked: parameters against
``sum(p.numel())`` of a built model, FLOPs against ``torch.utils.flop_counter.FlopCounterMode`` (which
counts matrix multiplications: 2 FLOPs per multiply-add; norms, softmax and activations are not counted), and
memory against the measured peak of a real training or inference step (see ``tests/test_sizing.py``).

Conventions:
- FLOPs per token divide a step's FLOPs by the tokens it processes (source + target for encoder-decoder).
  Attention FLOPs count every query-key pair (SDPA and the explicit path compute the full T x S scores even
  when half of them are masked, or all but a sliding window of them). Training = forward + backward = 3 x forward (the backward pass computes a
  gradient for each matmul's input and for its weight).
- Memory, inference: weights and the largest set of tensors alive at once. ``attention="sdpa"`` assumes a
  fused kernel that never materialises the (B, H, T, S) scores; ``"math"`` and ``"explicit"`` keep them
  (``"explicit"``: ``return_attention=True``, which also returns every layer's).
- Memory, training: one step as ``trilogy train`` runs it, with AdamW. Weights, gradients and AdamW's two
  moments; activations are the tensors autograd keeps for backward, counted tensor by tensor as trilogy's
  modules save them (norm inputs and statistics, projection inputs, q/k/v, the MLP's hidden units; dropout
  keeps a boolean mask as large as its input, ``blocks/dropout.py``). The peak is the largest of three moments: the
  fused loss running a chunk at the end of the forward pass, the start of backward, the optimizer step.
  - The loss is fused with the LM/MLM head (``blocks/loss.py``): only labelled rows reach the head (every
    token for LM, the masked 15% for MLM), and they go through in chunks of about 2M logits, at least 256 rows
    (``blocks.loss.loss_chunk_rows``), so only one chunk's (rows, V) logits and log-softmax exist at once, not
    the (N, V) logits. In forward the loss already computes
    and keeps the gradients of the hidden rows and of the (V, C) projection (fp32). Classifier heads keep
    their logits as usual.
  - ``attention``: "sdpa" is a fused kernel (q, k, v, output, log-sum-exp); T5's learned bias needs a
    gradient no fused kernel gives, so it runs SDPA's math path, and attention dropout runs trilogy's
    explicit path (in every mode: it is what runs on CPU). "math" is SDPA's math path for every layer: copies
    of q, k, v and the softmax, in fp32 on CPU whatever the input dtype. "explicit" is trilogy's own path: the
    softmax in fp32, and with dropout a boolean mask and the dropped weights.
  - ``checkpointing`` (``checkpoint_activations=True`` when the model is built): each layer keeps only its inputs (the hidden
    states; T5's bias and the encoder output, shared) and its dropout masks (booleans); backward rebuilds one
    layer's saved set at a time.
  - ``precision``: "fp32"; "bf16"/"fp16", the weights themselves in that dtype; "bf16-autocast", fp32 weights,
    gradients and moments with matmuls under ``torch.autocast`` (``trilogy train --precision bf16``): the
    residual stream, norms and statistics stay fp32, projection inputs and outputs, attention and the MLP are
    kept in bf16, and autocast keeps a bf16 copy of every linear weight from its first use in forward until
    its backward (until the forward ends under checkpointing, when only the recomputed layer's are rebuilt).
  - ``fsdp_shards`` N (``trilogy train --fsdp``, FSDP2 ``fully_shard`` per layer, then the root): per rank,
    1/N of the weights, gradients and moments, the batch split N ways; plus the unsharded parameters of the
    root (embeddings, head, final norms: gathered for the whole step), of the running layer and the one
    prefetched, and the unsharded gradients of the root and one layer before they are reduce-scattered.

Legend: B batch, T target length, S source length, C d_model, A = H * D attention width, G = K * D key/value
width, F d_ff, V vocabulary, N tokens (B * T).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import Tensor

from .blocks.loss import loss_chunk_rows
from .config import ModelConfig
from .errors import TrilogyError
from .objectives import MASK_PROBABILITY


@dataclass(frozen=True)
class Stack:
    """One stack of layers as the sizing sees it: its name, depth, query and key lengths."""

    name: str
    n_layers: int
    query_len: int
    key_len: int
    cross_len: int = 0  # source length its cross-attention reads (decoder of an encoder-decoder), else 0


def stacks(config: ModelConfig, seq: int, src: int | None = None) -> list[Stack]:
    """The stacks a forward pass runs for ``seq`` target tokens (``src`` source tokens for encoder-decoder),
    as the config's structure lists them."""
    structure = config.structure
    src = seq if src is None else src
    result = []
    for spec in structure.stacks:
        reads_source = structure.has_source and spec is not structure.output
        length = src if reads_source else seq
        result.append(Stack(spec.name, spec.n_layers, length, length, cross_len=src if spec.cross_attention else 0))
    return result


# --- parameters ---------------------------------------------------------------------------------------------

def _linear(d_in: int, d_out: int, bias: bool) -> int:
    return d_in * d_out + (d_out if bias else 0)


def _norm(config: ModelConfig, width: int | None = None) -> int:
    width = width or config.d_model
    return width * (2 if config.norm == "layernorm" and config.norm_bias else 1)


def _widths(config: ModelConfig) -> tuple[int, int, int, int]:
    """(C, A, G, F)."""
    return config.d_model, config.n_heads * config.d_head, config.n_kv_heads * config.d_head, config.d_ff


def _task_head_width(config: ModelConfig) -> int:
    """Logits per row of the task head: a classifier's labels, a span's start and end; 0 without one."""
    classifier = config.structure.classifier
    return 2 if classifier == "span" else config.num_labels if classifier else 0


def _task_head_key(config: ModelConfig) -> str:
    return "head/span" if config.structure.classifier == "span" else "head/classifier"


def _head_transform(config: ModelConfig) -> bool:
    """The classifier reads through a head transform of its own (ModernBERT's; the pooler holds the sequence
    classifier's)."""
    structure = config.structure
    return config.head_transform and structure.classifier is not None and structure.summary != "pooler"


def layer_parameters(config: ModelConfig, cross: bool) -> dict[str, int]:
    """One layer's parameters keyed by part."""
    c, a, g, f = _widths(config)
    qkv_bias = bool(config.qkv_bias)
    parts = {
        "attention/qkv": _linear(c, a + 2 * g, qkv_bias),
        "attention/out": _linear(a, c, config.bias),
        "attention/norm": _norm(config),
    }
    if config.qk_norm:
        parts["attention/qk_norm"] = 2 * _norm(config, config.d_head)
    if cross:
        parts.update({
            "cross_attention/q": _linear(c, a, qkv_bias),
            "cross_attention/kv": _linear(c, 2 * g, qkv_bias),
            "cross_attention/out": _linear(a, c, config.bias),
            "cross_attention/norm": _norm(config),
        })
        if config.qk_norm:
            parts["cross_attention/qk_norm"] = 2 * _norm(config, config.d_head)
    parts["mlp/up"] = _linear(c, f, config.bias)
    if config.gated_mlp:
        parts["mlp/gate"] = _linear(c, f, config.bias)
    parts["mlp/down"] = _linear(f, c, config.bias)
    parts["mlp/norm"] = _norm(config)
    if config.sandwich_norm:  # a norm on each branch's output too
        for branch in ("attention", "cross_attention", "mlp") if cross else ("attention", "mlp"):
            parts[f"{branch}/post_norm"] = _norm(config)
    return parts


def parameter_breakdown(config: ModelConfig) -> dict[str, int]:
    """Every parameter of the model built from ``config``, keyed like ``"decoder/attention/qkv"`` (summed over
    layers). Tied weights are counted once, under ``embeddings/tokens``."""
    c, v = config.d_model, config.vocab_size
    copies = len({spec.embeddings for spec in config.structure.stacks})  # BART: the decoder's own, bar the tokens
    parts = {"embeddings/tokens": v * c}
    if config.position == "learned":
        parts["embeddings/positions"] = copies * (config.position_offset + config.max_seq_len) * c
    if config.type_vocab_size:
        parts["embeddings/token_types"] = copies * config.type_vocab_size * c
    if config.embedding_norm:
        parts["embeddings/norm"] = copies * _norm(config)
    for stack in stacks(config, 1):
        for key, count in layer_parameters(config, cross=bool(stack.cross_len)).items():
            parts[f"{stack.name}/{key}"] = count * stack.n_layers
        if not config.first_attention_norm:  # layer 0 reads the embeddings as they come
            parts[f"{stack.name}/attention/norm"] -= _norm(config)
        if config.position == "relative":
            parts[f"{stack.name}/relative_bias"] = config.relative_buckets * config.n_heads
        if config.final_norm:
            parts[f"{stack.name}/final_norm"] = _norm(config)
    tied, structure = config.tie_embeddings, config.structure
    if structure.vocabulary == "lm":
        parts["head/lm"] = (0 if tied else c * v) + (v if config.head_bias else 0)
    if structure.vocabulary == "mlm":  # dense, LayerNorm, decoder (with its bias)
        parts["head/mlm"] = _linear(c, c, config.bias) + c * (2 if config.norm_bias else 1) + \
            (0 if tied else c * v) + v
    if structure.pooler:
        parts["head/pooler"] = _linear(c, c, config.bias) + (_norm(config) if config.head_transform else 0)
    if _head_transform(config):
        parts["head/transform"] = _linear(c, c, config.bias) + _norm(config)
    if structure.next_sentence:
        parts["head/next_sentence"] = _linear(c, 2, True)
    if structure.classifier:
        parts[_task_head_key(config)] = _linear(c, _task_head_width(config), not structure.bare_classifier)
    return parts


def count_parameters(config: ModelConfig) -> int:
    return sum(parameter_breakdown(config).values())


# --- FLOPs --------------------------------------------------------------------------------------------------

def flops_breakdown(config: ModelConfig, batch: int, seq: int, src: int | None = None,
                    labelled: int | None = None) -> dict[str, int]:
    """Forward-pass FLOPs of one step (2 per multiply-add), keyed by part and summed over layers.

    Args:
        labelled: rows that reach the LM/MLM head; default every target token (a forward without labels).
            Training with labels sends only the labelled rows there (``blocks/loss.py``): every token for a
            causal LM, the masked 15% for MLM, the target tokens for T5.
    """
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
    n, v, structure = batch * seq, config.vocab_size, config.structure
    head_rows = n if labelled is None else labelled
    if structure.vocabulary == "lm":
        parts["head/lm"] = 2 * head_rows * c * v
    if structure.vocabulary == "mlm":
        parts["head/mlm"] = 2 * head_rows * (c * c + c * v)
    if structure.pooler:
        parts["head/pooler"] = 2 * batch * c * c
    if structure.next_sentence:
        parts["head/next_sentence"] = 2 * batch * c * 2
    if structure.classifier:  # on a sequence's summary (pooled first or last real token), or on every token
        classified = batch if structure.classifier == "sequence" else n
        parts[_task_head_key(config)] = 2 * classified * c * _task_head_width(config)
        if _head_transform(config):
            parts["head/transform"] = 2 * classified * c * c
    return parts


def tokens_per_step(config: ModelConfig, batch: int, seq: int, src: int | None = None) -> int:
    return batch * sum(s.query_len for s in stacks(config, seq, src))


def training_flops(config: ModelConfig, rows: Iterable[tuple[int, int | None, int]]) -> int:
    """FLOPs one training step spends (forward + backward = 3 x forward) on rows of these real lengths, padding
    excluded: each row counted as if it ran alone, at its own length.

    Args:
        rows: per row ``(target tokens, source tokens or None, labelled tokens)``; the target is the only
            sequence of an encoder or a decoder, the decoder's input of an encoder-decoder.
    """
    return sum(3 * sum(flops_breakdown(config, 1, seq, src, labelled).values()) for seq, src, labelled in rows)


def batch_rows(batch: Mapping[str, Tensor]) -> list[tuple[int, int | None, int]]:
    """``training_flops``'s rows for a training batch of ``trilogy.objectives``: the real lengths from its
    attention masks (the decoder's for the target of an encoder-decoder) and the labelled tokens per row."""
    labelled = (batch["labels"] != -100).sum(-1).tolist() if batch["labels"].dim() == 2 else None
    if "decoder_attention_mask" in batch:
        targets, sources = batch["decoder_attention_mask"].sum(-1).tolist(), batch["attention_mask"].sum(-1).tolist()
    else:
        targets, sources = batch["attention_mask"].sum(-1).tolist(), [None] * len(batch["attention_mask"])
    labelled = labelled or [0] * len(targets)  # classification labels (B,): no LM head
    return list(zip(targets, sources, labelled, strict=True))


# --- memory -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Precision:
    """Bytes per element of what a step keeps, by role."""

    weights: int  # parameters, gradients and AdamW moments
    stream: int  # the residual stream: norm inputs and statistics, layer inputs, embedding outputs
    compute: int  # matrix products' inputs and outputs: projections, attention, the MLP's hidden units


PRECISIONS = {
    "fp32": Precision(4, 4, 4),
    "bf16": Precision(2, 2, 2),  # the weights themselves in bf16 (a model cast with .to(torch.bfloat16))
    "fp16": Precision(2, 2, 2),
    "bf16-autocast": Precision(4, 4, 2),  # fp32 weights under torch.autocast (`trilogy train --precision bf16`)
}
ATTENTION_PATHS = ("sdpa", "math", "explicit")
FP32 = 4
MASK = 1  # bytes per element of a dropout mask (bool, blocks/dropout.py)


def _norm_saved(config: ModelConfig, tokens: int, precision: Precision) -> int:
    """Bytes a norm keeps: LayerNorm its input and statistics; RMSNorm (``blocks/norm.py``) its normalised rows
    and the inverse RMS of each (fp32)."""
    c = config.d_model
    if config.norm == "layernorm":
        return tokens * (c + 2) * precision.stream
    return tokens * (c * precision.stream + FP32)


def _attention_saved(config: ModelConfig, batch: int, query_len: int, key_len: int, path: str, dropout: bool,
                     precision: Precision, cross: bool) -> int:
    """Bytes one attention keeps for backward, from the projections' outputs to the out-projection's input."""
    _, a, g, _ = _widths(config)
    n, kv = batch * query_len, batch * key_len
    grouped = config.n_kv_heads != config.n_heads
    kv_width = a if grouped else g  # grouped keys and values are repeated to every query head before attending
    scores = batch * config.n_heads * query_len * key_len
    out = n * a * precision.compute  # the output, which the out-projection keeps as its input
    if config.qk_norm:  # each head's q and k normalised: the norms keep their outputs and an inverse RMS per row
        out += (n * a + kv * g) * precision.compute + (n * config.n_heads + kv * config.n_kv_heads) * FP32
    if path == "sdpa":  # a fused kernel: q, k, v, the output and a log-sum-exp per query (fp32)
        rope = config.position == "rope" and not cross
        if cross:  # q: the q-projection's output; k, v: views of the kv-projection's output, or repeated copies
            inputs = n * a + 2 * kv * kv_width
        else:  # rotated q and k, repeated k and v are new tensors; the rest are views keeping the qkv output
            inputs = (n * a if rope else 0) + (kv * kv_width if rope or grouped else 0) + \
                (kv * a if grouped else 0) + (0 if rope and grouped else n * (a + 2 * g))
        return inputs * precision.compute + out + batch * config.n_heads * query_len * FP32
    if path == "math":  # SDPA's math fallback: copies of q, k, v and the softmax; on CPU in fp32 whatever the
        # input dtype
        return (n * a + 2 * kv * kv_width + scores) * FP32 + out
    # explicit: copies of q, k, v; the softmax in fp32, then the weights cast back (or dropped: a boolean mask
    # and the dropped weights, blocks/dropout.py) for the matmul; soft-capped scores keep their tanh
    weights = (1 if dropout or precision.compute != FP32 else 0) + (1 if config.attention_softcap else 0)
    return (n * a + 2 * kv * kv_width + scores * weights) * precision.compute + scores * (FP32 + MASK * dropout) \
        + out


def _mlp_hidden(config: ModelConfig, dropout: bool) -> int:
    """How many (tokens, d_ff) tensors the MLP keeps: the activation's input (ReLU keeps its output instead),
    the gate's two factors, and what the down-projection reads (or the dropped units; their boolean mask is
    counted by the caller)."""
    keeps_input = 1 if config.activation != "relu" else 0
    if config.gated_mlp:  # act(gate) * up keeps both factors
        return keeps_input + 2 + 1
    # the activation's output: ReLU keeps it; else the down-projection reads it, unless dropout comes between
    keeps_output = 1 if not keeps_input or not dropout else 0
    return keeps_input + keeps_output + (1 if dropout else 0)


def _attention_path(attention: str, dropout: bool, learned_bias: bool, softcap: bool = False) -> str:
    """The path an attention really takes on CPU: with attention dropout or soft-capped scores, trilogy's
    explicit one (blocks/attention.py); T5's learned bias needs a gradient, which no fused kernel gives, so SDPA
    runs its math path."""
    if dropout or softcap:
        return "explicit"
    if attention == "sdpa" and learned_bias:
        return "math"
    return attention


def _layer_saved(config: ModelConfig, batch: int, stack: Stack, attention: str, dropout: bool,
                 precision: Precision) -> int:
    """Bytes one layer keeps for backward."""
    c = config.d_model
    n = batch * stack.query_len
    # a sublayer keeps its norm's input and statistics (and its output norm's: sandwich), the projection's input
    # and a residual-dropout mask
    norms = 2 if config.sandwich_norm else 1
    sublayer = norms * _norm_saved(config, n, precision) + n * c * (precision.compute + MASK * dropout)
    softcap = config.attention_softcap is not None
    saved = sublayer + _attention_saved(config, batch, stack.query_len, stack.key_len,
                                        _attention_path(attention, dropout, config.position == "relative", softcap),
                                        dropout, precision, cross=False)
    if stack.cross_len:
        saved += sublayer + _attention_saved(config, batch, stack.query_len, stack.cross_len,
                                             _attention_path(attention, dropout, False, softcap), dropout,
                                             precision, cross=True)
        if precision.compute != precision.stream:  # each layer's kv-projection keeps its own cast of the source
            saved += batch * stack.cross_len * c * precision.compute
    mlp_mask = n * config.d_ff * MASK * dropout
    return saved + sublayer + _mlp_hidden(config, dropout) * n * config.d_ff * precision.compute + mlp_mask


def _layer_masks(config: ModelConfig, batch: int, stack: Stack) -> int:
    """Bytes of one layer's dropout masks: attention weights (self and cross), each residual branch, the MLP's
    hidden units."""
    n, branches = batch * stack.query_len, 3 if stack.cross_len else 2
    attention = batch * config.n_heads * stack.query_len * (stack.key_len + stack.cross_len)
    return MASK * (attention + branches * n * config.d_model + n * config.d_ff)


def _stack_saved(config: ModelConfig, batch: int, stack: Stack, attention: str, dropout: bool,
                 precision: Precision, checkpointing: bool) -> tuple[int, int]:
    """Bytes a stack keeps at the end of the forward pass, and one layer's saved set (what checkpointing
    rebuilds in backward)."""
    c, m = config.d_model, batch * stack.query_len
    layer = _layer_saved(config, batch, stack, attention, dropout, precision)
    kept = m * c * MASK * dropout  # embedding dropout mask
    if config.embedding_norm:
        kept += _norm_saved(config, m, precision)
    if config.final_norm:
        kept += _norm_saved(config, m, precision)
    if config.position == "relative":  # the (T, S) bucket ids the bias embedding keeps, int64
        kept += 8 * stack.query_len * stack.key_len
    if stack.cross_len and (checkpointing or precision.compute == precision.stream):
        kept += batch * stack.cross_len * c * precision.stream  # the encoder output, shared by every layer
    if not checkpointing:  # (layer 0 without its attention norm reads the embeddings as they come)
        unnormed = 0 if config.first_attention_norm else _norm_saved(config, m, precision)
        return kept + stack.n_layers * layer - unnormed, layer
    # each layer keeps only its inputs (the hidden states and T5's (1, H, T, S) bias, shared by the layers)
    # and its dropout masks, stored rather than drawn again (blocks/stack.py)
    kept += stack.n_layers * (m * c * precision.stream + _layer_masks(config, batch, stack) * dropout)
    if config.position == "relative":
        kept += config.n_heads * stack.query_len * stack.key_len * precision.stream
    return kept, layer


def labelled_rows(config: ModelConfig, tokens: int) -> int:
    """Rows that reach the LM/MLM head in training: every token for LM, the masked 15% for MLM."""
    if config.structure.vocabulary == "mlm":
        return max(1, round(MASK_PROBABILITY * tokens))
    return tokens


def _head_saved(config: ModelConfig, tokens: int, precision: Precision) -> tuple[int, int]:
    """Bytes the head and loss keep for backward, and the fused loss's temporaries while it runs one chunk."""
    c, v = config.d_model, config.vocab_size
    if not config.has_lm_head:  # classifiers: the logits, their log-probabilities and gradients
        width = _task_head_width(config)
        saved = (tokens * c + 4 * tokens * width) * precision.stream if width else 0
        if width and _head_transform(config):  # the transform's dense, activation and norm keep their inputs
            saved += tokens * (3 * c * precision.compute + 2 * FP32)
        return saved, 0
    rows = labelled_rows(config, tokens)
    mlm = config.structure.vocabulary == "mlm"
    # MLM's dense, GELU and LayerNorm keep their inputs (and statistics); the fused loss keeps the gradients it
    # computed in forward: the hidden rows' (in the head's output dtype) and the projection's, in fp32
    features = rows * (3 * c * precision.compute + 2 * FP32) if mlm else 0
    hidden = rows * c * (precision.compute if mlm else precision.stream)
    bias = v * FP32 if mlm or config.head_bias else 0
    saved = tokens + features + hidden + v * c * FP32 + bias  # (+ the labelled-row mask, bool)
    chunk = min(loss_chunk_rows(v), rows)
    capped = 1 if config.logit_softcap is not None and not mlm else 0  # the chunk's tanh(z / cap), fp32
    if precision.compute == FP32:
        # fp32: two (chunk, V) buffers live through the loop (logits, then their log-softmax turned in place
        # into the gradient); the projection's gradient accumulates in place
        return saved, hidden + chunk * v * (2 + capped) * FP32
    # low precision: a chunk's logits upcast to fp32 and their log-softmax; then that turned in place into the
    # gradient, a low-precision copy of it for the matmuls, and the projection's gradient for the chunk (+ its
    # fp32 upcast). The chunk's tensors go before the next chunk starts.
    logits = chunk * v * (2 + capped) * FP32
    gradients = chunk * v * ((1 + capped) * FP32 + precision.compute) + v * c * (precision.compute + FP32)
    return saved, hidden + max(logits, gradients)


def _layer_totals(config: ModelConfig, linear_only: bool) -> list[tuple[int, int]]:
    """(depth, parameters of one layer) of each stack; ``linear_only``: without the norms."""
    return [(s.n_layers, sum(count for key, count in layer_parameters(config, bool(s.cross_len)).items()
                             if not (linear_only and key.endswith("norm")))) for s in stacks(config, 1)]


def _linear_parameters(config: ModelConfig) -> tuple[int, int]:
    """Parameters of the linear layers: (in the largest layer, in the whole model incl. a tied head)."""
    layers = _layer_totals(config, linear_only=True)
    head = sum(count for key, count in parameter_breakdown(config).items() if key.startswith("head/"))
    tied = config.d_model * config.vocab_size if config.has_lm_head and config.tie_embeddings else 0
    return max(p for _, p in layers), sum(n * p for n, p in layers) + head + tied


def _fsdp_unit_parameters(config: ModelConfig) -> tuple[int, int]:
    """FSDP's units: (parameters of the largest layer, of the root: everything outside the layers)."""
    layers = _layer_totals(config, linear_only=False)
    return max(p for _, p in layers), count_parameters(config) - sum(n * p for n, p in layers)


def attention_map_elements(config: ModelConfig, batch: int, seq: int, src: int | None) -> int:
    """Elements of every layer's (B, H, T, S) attention weights: self, and cross for encoder-decoder."""
    return sum(batch * config.n_heads * s.n_layers * s.query_len * (s.key_len + s.cross_len)
               for s in stacks(config, seq, src))


def inference_activation_bytes(config: ModelConfig, batch: int, seq: int, src: int | None, dtype_bytes: int,
                               attention: str = "sdpa") -> int:
    """The largest set of tensors alive at once in an inference forward pass (plus every layer's attention
    weights on the explicit path, which returns them)."""
    c, a, g, f = _widths(config)
    v, n = config.vocab_size, batch * seq
    head_width = v if config.has_lm_head else _task_head_width(config)
    widest = 0
    for stack in stacks(config, seq, src):
        m = batch * stack.query_len
        keys = max(stack.key_len, stack.cross_len)
        explicit = attention != "sdpa" or config.attention_softcap is not None  # no kernel soft-caps scores
        scores = batch * config.n_heads * stack.query_len * keys if explicit else 0
        if config.position == "relative":  # the stack's bias and its masked copy, (1, H, T, S) each
            scores += 2 * config.n_heads * stack.query_len * stack.key_len
        layer = m * (2 * c + max(a + 2 * g + a, (3 if config.gated_mlp else 2) * f)) + scores
        # the stack returns every layer's keys and values, so they stay alive until it finishes
        kept_kv = stack.n_layers * 2 * g * (m + batch * stack.cross_len)
        widest = max(widest, layer + kept_kv + batch * stack.cross_len * c)
    head = n * c * (2 if config.head_scale != 1.0 or config.structure.vocabulary == "mlm" else 1)
    capped = 2 if config.logit_softcap is not None and config.structure.vocabulary == "lm" else 1  # z, tanh(z)
    kept_maps = attention_map_elements(config, batch, seq, src) if attention == "explicit" else 0
    return dtype_bytes * (max(widest, head + capped * n * head_width) + kept_maps)


def kv_cache_bytes(config: ModelConfig, batch: int, seq: int, src: int | None, dtype_bytes: int
                   ) -> dict[str, int]:
    """Keys and values a generation cache holds after ``seq`` target tokens (and ``src`` source tokens); a
    sliding layer's buffers, at most 2 * window positions."""
    output = config.structure.output  # the stack that decoding runs step by step
    if not output.causal:
        return {"self": 0, "cross": 0}
    g = config.n_kv_heads * config.d_head
    cross = 2 * batch * g * (src or seq) * output.n_layers if output.cross_attention else 0
    # a sliding layer's buffers hold at most twice its window (blocks/kv_cache.py)
    positions = sum(seq if window is None else min(seq, 2 * window) for window in output.windows)
    return {"self": dtype_bytes * 2 * batch * g * positions, "cross": dtype_bytes * cross}


def check_modes(precision: str, training: bool, attention: str, checkpointing: bool, fsdp_shards: int,
                batch: int) -> None:
    """Raise ValueError for an unknown mode or a combination trilogy does not run."""
    if precision not in PRECISIONS:
        raise TrilogyError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if attention not in ATTENTION_PATHS:
        raise TrilogyError(f"attention must be one of {', '.join(ATTENTION_PATHS)}, got {attention!r}")
    if not isinstance(fsdp_shards, int) or fsdp_shards < 1:
        raise TrilogyError(f"--fsdp-shards must be a positive integer, got {fsdp_shards!r}")
    if not training:
        for name, used in (("--checkpoint-activations", checkpointing), ("--fsdp-shards", fsdp_shards > 1),
                           ("--precision bf16-autocast", precision == "bf16-autocast")):
            if used:
                raise TrilogyError(f"{name} applies to a training step, not to --inference")
    if batch % fsdp_shards:
        raise TrilogyError(f"--batch {batch} does not split evenly over --fsdp-shards {fsdp_shards}")


def memory_breakdown(config: ModelConfig, batch: int, seq: int, src: int | None = None, precision: str = "fp32",
                     training: bool = True, attention: str = "sdpa", *, checkpointing: bool = False,
                     fsdp_shards: int = 1) -> dict[str, int]:
    """Bytes of one training step (AdamW) or one inference forward pass, by part, and their peak ``total``;
    per rank with ``fsdp_shards`` > 1 (``batch`` is then split over the ranks).

    Training peaks at one of three moments: in the forward pass, where the fused loss runs a chunk (everything
    kept so far, that chunk's temporaries, autocast's weight copies and FSDP's gathered layers); in backward
    (the kept activations, a recomputed layer under checkpointing, and up to all the gradients); or in the
    optimizer step (weights, gradients, moments and AdamW's temporaries, about one more copy of the weights).
    """
    check_modes(precision, training, attention, checkpointing, fsdp_shards, batch)
    p = PRECISIONS[precision]
    batch //= fsdp_shards
    all_params = count_parameters(config)
    params = -(-all_params // fsdp_shards) * p.weights
    cache = kv_cache_bytes(config, batch, seq, src, p.compute)
    memory = {
        "weights": params,
        "gradients": params if training else 0,
        "optimizer": 2 * params if training else 0,
        "activations": 0, "recompute": 0, "loss_chunk": 0, "autocast_weights": 0,
        "gathered_weights": 0, "gathered_gradients": 0,
        "attention_maps": p.compute * attention_map_elements(config, batch, seq, src),
        "kv_cache": 0 if training else cache["self"] + cache["cross"],
        "kv_cache_self": 0 if training else cache["self"],
        "kv_cache_cross": 0 if training else cache["cross"],
    }
    if not training:
        memory["activations"] = inference_activation_bytes(config, batch, seq, src, p.compute, attention)
        memory["total"] = params + memory["activations"]
        return memory
    dropout = config.dropout > 0
    for stack in stacks(config, seq, src):
        kept, layer = _stack_saved(config, batch, stack, attention, dropout, p, checkpointing)
        memory["activations"] += kept
        memory["recompute"] = max(memory["recompute"], layer if checkpointing else 0)
    head, memory["loss_chunk"] = _head_saved(config, batch * seq, p)
    memory["activations"] += head
    if p.compute != p.weights:  # autocast keeps a low-precision copy of every weight its matmuls read
        per_layer, linear = _linear_parameters(config)
        memory["autocast_weights"] = linear * p.compute
        if checkpointing:  # ...until the forward ends; in backward only the recomputed layer's exist
            memory["recompute"] += per_layer * p.compute
    if fsdp_shards > 1:  # the root's parameters stay gathered all step; a layer's are gathered, and the next
        layer, root = _fsdp_unit_parameters(config)  # one's prefetched, while it runs
        memory["gathered_weights"] = (root + 2 * layer) * p.weights
        memory["gathered_gradients"] = (root + layer) * p.weights  # before they are reduce-scattered
    copies = 0 if checkpointing else memory["autocast_weights"]
    forward = memory["activations"] + memory["loss_chunk"] + memory["autocast_weights"] + memory["gathered_weights"]
    backward = memory["activations"] + memory["recompute"] + copies + memory["gradients"] + \
        memory["gathered_weights"] + memory["gathered_gradients"]
    optimizer_step = memory["gradients"] + memory["optimizer"] + params
    memory["total"] = params + max(forward, backward, optimizer_step)
    return memory


# --- the whole report ---------------------------------------------------------------------------------------

def size_report(config: ModelConfig, batch: int = 1, seq: int | None = None, src: int | None = None,
                precision: str = "fp32", training: bool = True, attention: str = "sdpa", *,
                checkpointing: bool = False, fsdp_shards: int = 1) -> dict:
    """Parameters, FLOPs per token (forward and training) and memory for ``batch`` sequences of ``seq``
    tokens (default: the config's ``max_seq_len``; ``src`` source tokens for encoder-decoder). The modes are
    ``memory_breakdown``'s."""
    seq = config.max_seq_len if seq is None else seq
    for name, value in (("batch", batch), ("seq", seq), ("src", src if src is not None else 1)):
        if not isinstance(value, int) or value <= 0:
            raise TrilogyError(f"--{name} must be a positive integer, got {value!r}")
    if config.position in ("learned", "sinusoidal") and max(seq, src or 0) > config.max_seq_len:
        raise TrilogyError(f"this model's positions stop at max_seq_len={config.max_seq_len}; "
                           f"--seq/--src {max(seq, src or 0)} is longer")
    has_source = config.structure.has_source
    if not has_source and src is not None:
        raise TrilogyError(f"--src applies to encoder-decoder models; this one is {config.arch!r}")
    memory = memory_breakdown(config, batch, seq, src, precision, training, attention,
                              checkpointing=checkpointing, fsdp_shards=fsdp_shards)
    flops = flops_breakdown(config, batch, seq, src)
    forward = sum(flops.values())
    tokens = tokens_per_step(config, batch, seq, src)
    return {
        "arch": config.arch,
        "preset": config.extra.get("preset"),
        "workload": {"batch": batch, "seq": seq, "src": src if has_source else None,
                     "precision": precision, "mode": "training" if training else "inference",
                     "attention": attention, "checkpointing": checkpointing, "fsdp_shards": fsdp_shards,
                     "batch_per_rank": batch // fsdp_shards,
                     "labelled_rows": labelled_rows(config, batch // fsdp_shards * seq)
                     if training and config.has_lm_head else None},
        "params": count_parameters(config),
        "params_breakdown": parameter_breakdown(config),
        "flops_per_step": {"forward": forward, "training": 3 * forward},
        "flops_per_token": {"forward": forward / tokens, "training": 3 * forward / tokens},
        "flops_breakdown": flops,
        "memory_bytes": memory,
    }
