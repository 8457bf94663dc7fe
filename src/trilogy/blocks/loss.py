"""Cross-entropy over the vocabulary fused with the output projection, computed in chunks of rows.

The plain path holds the logits (N, V), their log-softmax for backward and the logits' gradient: three
(N, V) tensors, which dominate a training step's memory when V is large. Here each chunk of rows computes its
logits, loss and the gradients with respect to the hidden states and the projection in one go, so at most one
chunk of logits exists at a time; backward only scales the saved gradients. The arithmetic is the same as the
plain path (one forward matmul, two gradient matmuls), none of it repeated. Soft-capped logits (Gemma 2's
tanh(z / cap) * cap) keep the chunk's tanh for the gradient's factor 1 - tanh^2: one more (n, V) buffer.

Legend: N rows (tokens), C width, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor, chunk_rows: int,
                needs_grad: bool, softcap: float | None):
        total = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if needs_grad else None
        # fp32 without autocast: every chunk reuses two (n, V) buffers. A fresh tensor this large is a fresh
        # mapping from the OS, whose pages fault in one by one as they are first written
        reuse = not torch.is_autocast_enabled(hidden.device.type) and hidden.dtype == weight.dtype == torch.float32
        # fp32: the first chunk's product writes the projection's gradient, the others add to it in the matmul
        grad_weight = (torch.empty_like if reuse else torch.zeros_like)(weight, dtype=torch.float32) \
            if needs_grad else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if needs_grad and bias is not None else None
        if reuse:
            logits_room = hidden.new_empty(min(chunk_rows, hidden.size(0)), weight.size(0))
            log_probs_room = torch.empty_like(logits_room)
        for start in range(0, hidden.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            h, y = hidden[rows], labels[rows]  # (n, C), (n,)
            keep = y != IGNORE_INDEX  # (n,)
            target = y.clamp(min=0)[:, None]  # (n, 1); ignored rows point at token 0, left out below
            if reuse:
                logits = logits_room[:h.size(0)]
                if bias is None:
                    torch.mm(h, weight.t(), out=logits)  # (n, V)
                else:
                    torch.addmm(bias, h, weight.t(), out=logits)
            else:
                logits = F.linear(h, weight, bias).float()  # (n, V)
            tanh = None
            if softcap is not None:  # the logits' buffer turns into tanh(z / cap), kept for the gradient
                tanh = logits.div_(softcap).tanh_()  # (n, V)
                logits = tanh * softcap  # (n, V)
            if not needs_grad:  # argmax hits only when evaluating: training does not use them (a pass over V)
                correct += (logits.argmax(-1) == y).sum()  # ignored rows (-100) never match
            if reuse:
                log_probs = torch.log_softmax(logits, dim=-1, out=log_probs_room[:h.size(0)])  # (n, V)
            else:
                log_probs = logits.log_softmax(dim=-1)  # (n, V); the logits are not needed any more
            del logits
            picked = log_probs.gather(1, target).squeeze(1)  # (n,)
            total -= torch.where(keep, picked, 0.0).sum()  # no read of keep back from the device
            if not needs_grad:
                continue
            grad_logits = log_probs.exp_()  # d(sum of losses)/d(logits) = softmax - onehot, in place
            grad_logits.scatter_add_(1, target, -keep[:, None].to(grad_logits.dtype))
            if tanh is not None:  # through the cap: d(cap * tanh(z / cap)) / dz = 1 - tanh^2
                grad_logits.mul_(tanh.square_().neg_().add_(1))
            grad_logits = grad_logits.to(h.dtype)
            # ignored rows still hold a softmax: they are left out through the (n, C) sides of the products,
            # not by a pass over (n, V)
            kept = keep[:, None].to(h.dtype)  # (n, 1)
            h = h * kept  # (n, C)
            torch.mm(grad_logits, weight.to(h.dtype), out=grad_hidden[rows]).mul_(kept)  # (n, C)
            if not reuse:
                grad_weight += (grad_logits.t() @ h).float()  # (V, C)
            elif start == 0:
                torch.mm(grad_logits.t(), h, out=grad_weight)  # (V, C)
            else:  # accumulated inside the matmul: no (V, C) temporary per chunk
                torch.addmm(grad_weight, grad_logits.t(), h, out=grad_weight)
            if grad_bias is not None:
                grad_bias += (kept.t() @ grad_logits).float().squeeze(0)  # (V,)
            del log_probs, grad_logits, tanh  # before the next chunk's logits: one chunk of (n, V) at a time
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(correct)
        return total, correct

    @staticmethod
    def backward(ctx, grad_total: Tensor, grad_correct: Tensor | None = None):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_total.float()
        return (
            grad_hidden * scale.to(grad_hidden.dtype) if ctx.needs_input_grad[0] else None,
            grad_weight * scale if ctx.needs_input_grad[1] else None,
            grad_bias * scale if ctx.has_bias and ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
            None,
        )


#: logits per chunk: 2M floats (8 MB) keep a chunk's logits, log-probabilities and gradient in the cache between
#: the passes over them; but every chunk also reads and writes the whole (V, C) gradient of the projection, so
#: a chunk has at least ``MIN_CHUNK_ROWS`` rows (at V 50257, 41-row chunks took 1.7x as long as 256-row ones).
#: ``python benchmarks/loss.py`` times the default against fixed chunks and the plain path.
CHUNK_LOGITS = 2**21
MIN_CHUNK_ROWS = 256


def loss_chunk_rows(vocab_size: int) -> int:
    """Rows per chunk by default: ``CHUNK_LOGITS`` logits, at least ``MIN_CHUNK_ROWS`` rows."""
    return max(MIN_CHUNK_ROWS, CHUNK_LOGITS // vocab_size)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor,
                         chunk_rows: int | None = None, softcap: float | None = None
                         ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Sum of token cross-entropies of ``hidden @ weight.T + bias`` (soft-capped to tanh(z / softcap) * softcap
    when ``softcap`` is given) against ``labels``, without materialising all the logits.

    Args:
        hidden: (..., C); weight: (V, C); bias: (V,) or None; labels: (...) with -100 for positions to ignore.
    Returns:
        (loss summed over the counted tokens, number of counted tokens, how many of them the argmax predicts),
        all scalars; the last is None when a gradient is being computed (training does not use it, and the
        argmax would cost a pass over every logit).
    """
    hidden = hidden.reshape(-1, hidden.size(-1))  # (N, C)
    chunk_rows = chunk_rows or loss_chunk_rows(weight.size(0))
    labels = labels.reshape(-1)  # (N,)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias))
    # decided here, not from ctx.needs_input_grad, which is True for parameters even under no_grad
    total, correct = _LinearCrossEntropy.apply(hidden, weight, bias, labels, chunk_rows, needs_grad, softcap)
    return total, (labels != IGNORE_INDEX).sum(), None if needs_grad else correct
