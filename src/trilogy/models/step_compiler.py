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

Legend: M rows, K shared dimension, N output columns.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def compile_step(step: Callable) -> Callable:
    """``step`` compiled once per input shapes: one graph, fixed shapes, one-row products streamed. Each model's
    step counts its own recompiles against dynamo's limit (8) where ``torch.compile`` has ``isolate_recompiles``;
    in older torch all models' steps share it, since they are one function."""
    isolated: dict[str, Any] = {}
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        isolated["isolate_recompiles"] = True
    return torch.compile(step, backend=_inductor_with_streamed_rows, fullgraph=True, dynamic=False, **isolated)


def streamed_product(rows: Tensor, matrix: Tensor, scales: Tensor | None = None) -> Tensor:
    """rows (M, K) @ matrix (K, N) as a multiply and a sum, accumulated in float32, times ``scales`` (N,) if
    given (an int8 matrix's), rounded to the rows' dtype."""
    out = (rows.float()[:, :, None] * matrix.float()[None]).sum(dim=1)  # (M, K, N) -> (M, N)
    return (out if scales is None else out * scales.float()).to(rows.dtype)


def _inductor_with_streamed_rows(graph: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable:
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    table = dict(select_decomp_table())
    aten = torch.ops.aten
    inductors_mm, inductors_addmm = table.get(aten.mm.default), table.get(aten.addmm.default)

    def mm(rows: Tensor, matrix: Tensor) -> Any:
        if rows.size(0) == 1:
            return streamed_product(rows, matrix)
        return inductors_mm(rows, matrix) if inductors_mm is not None else NotImplemented

    def addmm(bias: Tensor, rows: Tensor, matrix: Tensor, *, beta: float = 1, alpha: float = 1) -> Any:
        if rows.size(0) == 1 and beta == 1 and alpha == 1:
            return bias + streamed_product(rows, matrix)
        if inductors_addmm is not None:
            return inductors_addmm(bias, rows, matrix, beta=beta, alpha=alpha)
        return NotImplemented

    def int8_mm(rows: Tensor, weight: Tensor, scales: Tensor) -> Any:  # QuantizedLinear's int8 product
        if rows.size(0) == 1:
            return streamed_product(rows, weight.t(), scales)  # weight (N, K) int8, scales (N,)
        return NotImplemented

    table[aten.mm.default], table[aten.addmm.default] = mm, addmm
    table[aten._weight_int8pack_mm.default] = int8_mm
    # AOTAutograd's cache of compiled graphs (newer torch) keys them without the decompositions: it would hand
    # back a graph compiled by plain inductor
    functorch_config = torch._functorch.config
    uncached = (functorch_config.patch(enable_autograd_cache=False)
                if hasattr(functorch_config, "enable_autograd_cache") else contextlib.nullcontext())
    with uncached:
        compiled: Callable = compile_fx(graph, example_inputs, decompositions=table)  # type: ignore[assignment]
    return compiled
