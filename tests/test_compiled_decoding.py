"""Compiled decoding (``generate(..., compile=True)``): a ``StaticKVCache`` gives the logits of the growing
cache step by step; the compiled step gives the eager path's tokens, greedy and sampled, and compiles once for
a batch size and capacity, not at every step; what it cannot decode is refused."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import Tensor
from torch._dynamo.utils import counters
from torch.testing import assert_close

import trilogy
from trilogy.blocks.kv_cache import StaticKVCache
from trilogy.errors import TrilogyError
from trilogy.models.step_compiler import one_row_attention, streamed_product

from .test_generate import spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")
#: inductor writes C++ for the CPU and builds it with the system's compiler
needs_compiler = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                                    reason="torch.compile on CPU needs a C++ compiler")


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_a_static_cache_gives_the_logits_of_the_growing_cache(preset):
    model = spread_weights(trilogy.build(preset))
    prompt = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        inputs, _ = model.start(prompt, max_new_tokens=4)
        growing, static = model.new_cache(2, 9), model.new_cache(2, 12, static=True)
        assert isinstance(static, StaticKVCache)
        for _ in range(4):
            expected, growing = model.step(inputs, growing)
            logits, static = model.step(inputs, static)
            assert_close(logits, expected)
            inputs = inputs.advance(expected.argmax(-1)[:, None])
        assert int(static.written) == 8


@needs_compiler
def test_compiled_decoding_gives_the_eager_tokens_and_compiles_once():
    model = spread_weights(trilogy.build("tiny-llama"))
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, model.config.vocab_size, (2, n), generator=generator) for n in (6, 9)]
    greedy = dict(max_new_tokens=12, eos_token_id=None)
    sampled = dict(greedy, do_sample=True, top_k=20, temperature=0.8, seed=3)
    graphs = counters["stats"]["unique_graphs"]
    for prompt in prompts:  # both fit one capacity (rounded up): one graph for both, and for every step
        for options in (greedy, sampled):
            eager = model.generate(prompt, **options)
            compiled = model.generate(prompt, compile=True, **options)
            assert torch.equal(compiled, eager)
            assert not torch.equal(eager[:, -12:], eager[:, -13:-1])  # the tokens change from step to step
    assert counters["stats"]["unique_graphs"] - graphs == 1


@needs_compiler
def test_the_compiled_step_reads_weights_written_in_place_without_compiling_again():
    model = spread_weights(trilogy.build("tiny-llama"))
    prompt = torch.randint(0, model.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(2))
    options = dict(max_new_tokens=8, eos_token_id=None)
    before = model.generate(prompt, compile=True, **options)
    graphs = counters["stats"]["unique_graphs"]
    with torch.no_grad():
        model.lm_head.proj.weight.mul_(-1.0)  # now the least likely token is the most likely one
    after = model.generate(prompt, compile=True, **options)
    assert torch.equal(after, model.generate(prompt, **options)) and not torch.equal(after, before)
    assert counters["stats"]["unique_graphs"] == graphs


#: the matrix-product and attention kernels a compiled graph may call (the int8 one is ``QuantizedLinear``'s)
PRODUCT_KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
                   "aten::_weight_int8pack_mm")
ATTENTION_KERNELS = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
                     "aten::_scaled_dot_product_attention_math")


@needs_compiler
@pytest.mark.parametrize("weights", ["float32", "bfloat16", "int8"])
def test_one_row_products_are_compiled_into_loops_not_matrix_kernels(weights):
    """The claim of step_compiler.py: a batch-1 step calls no matrix-product kernel and no attention kernel
    (the profiler lists every external call the compiled graph makes); a batch-2 step still calls the matrix
    product, and no attention kernel (one query row per sequence). The same step compiled by plain inductor
    first must not be handed back from torch's caches."""
    model = spread_weights(trilogy.build("tiny-llama"))
    model = trilogy.quantize(model, "int8") if weights == "int8" else model.to(getattr(torch, weights))
    kernel = "aten::_weight_int8pack_mm" if weights == "int8" else "aten::mm"

    def products(batch: int, step=None) -> list[str]:
        step = step or model.compiled_step()
        prompt = torch.randint(0, model.config.vocab_size, (batch, 1), generator=torch.Generator().manual_seed(3))
        with torch.inference_mode():
            inputs, _ = model.start(prompt, max_new_tokens=2)
            cache = model.new_cache(batch, 128, static=True)
            logits, cache = model.step(inputs, cache)  # the prompt's step, eager as in generate
            inputs = inputs.advance(logits.argmax(-1)[:, None])
            logits, cache = step(inputs, cache)  # compiles
            with torch.profiler.profile() as profile:
                step(inputs.advance(logits.argmax(-1)[:, None]), cache)
        return [e.key for e in profile.key_averages() if e.key in PRODUCT_KERNELS + ATTENTION_KERNELS]

    plain = products(1, torch.compile(model.step, fullgraph=True, dynamic=False))
    assert kernel in plain and any(k in ATTENTION_KERNELS for k in plain)
    assert products(1) == []
    assert products(2) == [kernel]


@needs_compiler
@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_quantised_models_decode_the_eager_tokens_compiled(fmt):
    model = trilogy.quantize(spread_weights(trilogy.build("tiny-llama")), fmt)
    prompt = torch.randint(0, model.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(5))
    options = dict(max_new_tokens=10, eos_token_id=None)
    eager = assert_eager_tokens_up_to_a_tie(model, prompt, options)
    assert len(set(eager[0, 5:].tolist())) > 3  # the tokens change from step to step


def assert_eager_tokens_up_to_a_tie(model, prompt: Tensor, options: dict) -> Tensor:
    """The compiled step decodes ``prompt`` (1, T) to the eager tokens, except from a step whose two best eager
    logits are within two roundings of the model's dtype of each other (bfloat16 keeps 8 bits): a tie that
    rounding in another order may break the other way. Returns the eager tokens."""
    eager = model.generate(prompt, **options)
    compiled = model.generate(prompt, compile=True, **options)
    differ = (compiled != eager)[0].nonzero().flatten().tolist()
    if differ:
        with torch.inference_mode():
            logits = model(eager[:, :differ[0]])[0, -1].float()  # (V,) the step that chose the first difference
        best, second = logits.topk(2).values.tolist()
        rounding = torch.finfo(model.lm_head.proj.scales.dtype).eps * 2.0 ** math.floor(math.log2(abs(best)))
        assert best - second <= 2 * rounding, f"compiled tokens differ from step {differ[0]}, not a tie"
    return eager


@needs_compiler
def test_a_model_changed_between_two_generate_calls_is_compiled_again():
    """A compiled step's later steps in one ``generate`` skip dynamo's guards; its first step checks them, so a
    model in another dtype since the last call gets a graph of its own."""
    model = spread_weights(trilogy.build("tiny-llama"))
    prompt = torch.randint(0, model.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(7))
    options = dict(max_new_tokens=8, eos_token_id=None)
    assert torch.equal(model.generate(prompt, compile=True, **options), model.generate(prompt, **options))
    graphs = counters["stats"]["unique_graphs"]
    model.double()
    assert torch.equal(model.generate(prompt, compile=True, **options), model.generate(prompt, **options))
    assert counters["stats"]["unique_graphs"] == graphs + 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_streamed_product_is_the_matrix_product(dtype):
    generator = torch.Generator().manual_seed(4)
    rows, matrix = (torch.randn(shape, generator=generator).to(dtype) for shape in [(1, 300), (300, 70)])
    expected = (rows.double() @ matrix.double()).to(dtype)
    assert streamed_product(rows, matrix).dtype == dtype
    assert_close(streamed_product(rows, matrix), expected)
    assert_close(streamed_product(rows, matrix), rows @ matrix)


def test_a_streamed_int8_product_is_the_int8_kernels():
    """With an int8 matrix (N, K) and its scales (N,), as ``QuantizedLinear`` stores them."""
    generator = torch.Generator().manual_seed(6)
    rows = torch.randn(1, 256, generator=generator).to(torch.bfloat16)
    weight = torch.randint(-127, 128, (96, 256), generator=generator, dtype=torch.int8)
    scales = (torch.rand(96, generator=generator) / 100).to(torch.bfloat16)
    expected = ((rows.double() @ weight.double().T) * scales.double()).to(torch.bfloat16)
    assert_close(streamed_product(rows, weight.T, scales), expected)
    assert_close(streamed_product(rows, weight.T, scales), torch.ops.aten._weight_int8pack_mm(rows, weight, scales))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mask_kind", ["bool", "additive", None])
def test_one_row_attention_is_softmax_attention(dtype, mask_kind):
    """Against torch's SDPA in float64: query heads sharing key heads (9 over 3), a mask, a scale; and its
    log-sum-exp against the flash-attention kernel's, which it replaces (that kernel takes additive masks)."""
    generator = torch.Generator().manual_seed(8)
    query, key, value = (torch.randn(shape, generator=generator).to(dtype)
                         for shape in [(2, 9, 1, 16), (2, 3, 20, 16), (2, 3, 20, 16)])
    seen = torch.rand(2, 1, 1, 20, generator=generator) > 0.3
    seen[..., 0] = True
    mask = {"bool": seen, "additive": torch.zeros(seen.shape, dtype=dtype).masked_fill(~seen, float("-inf")),
            None: None}[mask_kind]
    out, logsumexp = one_row_attention(query, key, value, mask, scale=0.3)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query.double(), key.double(), value.double(), attn_mask=None if mask is None else mask.to(
            torch.bool if mask_kind == "bool" else torch.float64), scale=0.3, enable_gqa=True)
    assert out.dtype == dtype and out.shape == (2, 9, 1, 16)
    assert_close(out, expected.to(dtype))
    if mask_kind != "bool" and dtype != torch.float64:
        _, kernel_logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, attn_mask=mask, scale=0.3)
        assert_close(logsumexp, kernel_logsumexp, rtol=1e-5, atol=1e-4)  # both float32, summed in other orders


def test_what_compiled_decoding_cannot_decode_is_refused():
    model = trilogy.build("tiny-llama").eval()
    prompt = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(TrilogyError, match="beam search"):
        model.generate(prompt, compile=True, num_beams=2)
    with pytest.raises(TrilogyError, match="padding"):
        model.generate(prompt, torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]), compile=True)
    with pytest.raises(TrilogyError, match="decoder-only"):
        trilogy.build("tiny-t5").eval().generate(prompt, compile=True)


@needs_compiler
def test_the_cli_decodes_with_a_compiled_step(tmp_path, capsys):
    from trilogy.cli import main

    from .test_chat import write_checkpoint

    write_checkpoint(tmp_path, "file")
    argv = ["generate", str(tmp_path), "--prompt", "where is the cat", "--max-new-tokens", "5", "--json"]
    assert main(argv) == 0
    eager = json.loads(capsys.readouterr().out)
    assert main([*argv, "--compile"]) == 0
    compiled = json.loads(capsys.readouterr().out)
    assert compiled["options"]["compile"] is True and compiled["new_ids"] == eager["new_ids"]
    assert main([*argv, "--compile", "--num-beams", "2"]) == 2
    assert "not by beam search" in capsys.readouterr().err
