"""How ``compiled_step`` compiles a decoding step: torch.compile's inductor, with each product of one row by a
matrix written as a multiply and a sum.

A decoding step multiplies one row per sequence by every weight matrix: two flops per weight it reads, so its
time is the matrices' bytes over the rate at which they stream from memory. Inductor hands a matrix product to
an external kernel (the BLAS, or oneDNN with frozen weights), one call per product, and those stream these
small matrices well below the machine's read bandwidth (the eager rows of ``benchmarks/decode.py``). A
multiply and a sum it writes as its own vectorised loop instead, fused with the norm before it and the
activation after, which streams the weights much nearer that bandwidth (its compiled rows). So the step compiles with inductor's own
decompositions plus one: ``mm`` and ``addmm`` with a left operand of one row become a broadcast product summed
over the shared dimension, in float32 and rounded to the operands' dtype (as the BLAS accumulates); products of
more rows (a prompt, a batch) stay matrix products.

The weights are inputs of the compiled graph, not constants frozen into it: inductor would fold the cast of a
bfloat16 weight to float32 into a float32 copy (twice the bytes to stream), and a weight written in place
(training between two ``generate`` calls) is simply read at the next step.

Two more rewrites keep the step's time in those loops. The row a product multiplies is stored before the
product (``_stored``): left to itself, inductor recomputes the norm that made it inside the product's loop, once
for every row of the matrix (the head's 49,152). And attention of one query row is written as sums too
(``one_row_attention``), fused into the layer's loops, instead of a call to the flash-attention kernel per layer
whose fixed cost is most of its time at this size.

Outside the graph, dynamo checks its guards (the modules, their tensors' dtypes and shapes, the inputs') before
every call, about 2 ms for 30 layers. ``generate`` lets the first compiled step of a call check them, which
compiles again where the model changed since the last call, and runs the others ``unguarded``.

Legend: M rows, K shared dimension, N output columns.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: this torch has ``torch.compiler.set_stance(skip_guard_eval_unsafe=True)`` (newer ones do)
_set_stance = getattr(torch.compiler, "set_stance", None)
_CAN_SKIP_GUARDS = _set_stance is not None and "skip_guard_eval_unsafe" in inspect.signature(_set_stance).parameters


def compile_step(step: Callable) -> Callable:
    """``step`` compiled once per input shapes: one graph, fixed shapes, one-row products streamed. Each model's
    step counts its own recompiles against dynamo's limit (8) where ``torch.compile`` has ``isolate_recompiles``;
    in older torch all models' steps share it, since they are one function."""
    isolated: dict[str, Any] = {}
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        isolated["isolate_recompiles"] = True
    return torch.compile(step, backend=_inductor_with_streamed_rows, fullgraph=True, dynamic=False, **isolated)


def streamed_product(rows: Tensor, matrix: Tensor, scales: Tensor | None = None) -> Tensor:
    """rows (M, K) @ matrix (K, N) as a multiply and a sum, accumulated in float32 (float64 rows: in float64),
    times ``scales`` (N,) if given (an int8 matrix's), rounded to the rows' dtype."""
    wide = _accumulating(rows.dtype)
    out = (rows.to(wide)[:, :, None] * matrix.to(wide)[None]).sum(dim=1)  # (M, K, N) -> (M, N)
    return (out if scales is None else out * scales.to(wide)).to(rows.dtype)


def one_row_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                      scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Softmax attention of one query position: query (B, H, 1, D) against key and value (B, Hkv, L, D),
    H a multiple of Hkv (query heads share key heads in groups of G = H / Hkv), ``attn_mask`` broadcastable to
    (B, H, 1, L), True or 0 where a position is seen; in float32 (float64 queries: float64), rounded to the
    query's dtype.
    -> the output (B, H, 1, D) and the scores' log-sum-exp (B, H, 1), as the flash-attention kernel returns"""
    batch, heads, _, width = query.shape
    key_heads, length = key.size(1), key.size(2)
    scale = width ** -0.5 if scale is None else scale
    wide = _accumulating(query.dtype)
    grouped = query.to(wide).reshape(batch, key_heads, heads // key_heads, 1, width)  # (B, Hkv, G, 1, D)
    scores = (grouped * key.to(wide)[:, :, None]).sum(-1).reshape(batch, heads, 1, length) * scale  # (B, H, 1, L)
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask.to(wide))
    weights = scores.softmax(-1).reshape(batch, key_heads, heads // key_heads, length, 1)  # (B, Hkv, G, L, 1)
    out = (weights * value.to(wide)[:, :, None]).sum(-2)  # (B, Hkv, G, D)
    return out.reshape(batch, heads, 1, width).to(query.dtype), scores.logsumexp(-1)


def _accumulating(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _stored(rows: Tensor) -> Tensor:
    """``rows`` as inductor will store them in a buffer before the loop that reads them, instead of computing
    them inside it (its own lowering of this op; without it, in a torch that lacks it, they are recomputed)."""
    realize = getattr(getattr(torch.ops, "_inductor_test", None), "realize", None)
    return rows if realize is None else realize(rows)


def _inductor_with_streamed_rows(graph: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable:
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    table = dict(select_decomp_table())
    aten = torch.ops.aten
    inductors_mm, inductors_addmm = table.get(aten.mm.default), table.get(aten.addmm.default)

    def mm(rows: Tensor, matrix: Tensor) -> Any:
        if rows.size(0) == 1:
            return streamed_product(_stored(rows), matrix)
        return inductors_mm(rows, matrix) if inductors_mm is not None else NotImplemented

    def addmm(bias: Tensor, rows: Tensor, matrix: Tensor, *, beta: float = 1, alpha: float = 1) -> Any:
        if rows.size(0) == 1 and beta == 1 and alpha == 1:
            return bias + streamed_product(_stored(rows), matrix)
        if inductors_addmm is not None:
            return inductors_addmm(bias, rows, matrix, beta=beta, alpha=alpha)
        return NotImplemented

    def int8_mm(rows: Tensor, weight: Tensor, scales: Tensor) -> Any:  # QuantizedLinear's int8 product
        if rows.size(0) == 1:
            # weight (N, K) int8, scales (N,); rows stored in float32 (exactly): inductor's loop over int8 weights
            # and float32 rows streams faster than the one it writes for bfloat16 rows
            return streamed_product(_stored(rows.float()), weight.t(), scales).to(rows.dtype)
        return NotImplemented

    def attention(query: Tensor, key: Tensor, value: Tensor, dropout_p: float = 0.0, is_causal: bool = False, *,
                  attn_mask: Tensor | None = None, scale: float | None = None) -> Any:
        if query.size(2) == 1 and dropout_p == 0 and not is_causal:
            return one_row_attention(query, key, value, attn_mask, scale)
        return NotImplemented

    table[aten.mm.default], table[aten.addmm.default] = mm, addmm
    table[aten._scaled_dot_product_flash_attention_for_cpu.default] = attention
    table[aten._weight_int8pack_mm.default] = int8_mm
    # AOTAutograd's cache of compiled graphs (newer torch) keys them without the decompositions: it would hand
    # back a graph compiled by plain inductor
    functorch_config = torch._functorch.config
    uncached = (functorch_config.patch(enable_autograd_cache=False)
                if hasattr(functorch_config, "enable_autograd_cache") else contextlib.nullcontext())
    with uncached:
        compiled: Callable = compile_fx(graph, example_inputs, decompositions=table)  # type: ignore[assignment]
    return compiled


def unguarded() -> contextlib.AbstractContextManager:
    """A context in which compiled steps skip dynamo's check of their guards (about 2 ms a step for a model of
    30 layers), where this torch can: for the steps of one ``generate`` call after its first compiled one, which
    checked them, since nothing the guards watch changes between them."""
    return torch.compiler.set_stance(skip_guard_eval_unsafe=True) if _CAN_SKIP_GUARDS else contextlib.nullcontext()
