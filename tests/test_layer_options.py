"""The block options the GPT-NeoX, Phi-3 and Gemma families need, and two of Gemma 2's, each against a small
reference computation written from transformers' code: partial rotary, the parallel residual, RMSNorm with
(1 + weight) and the embeddings' scale in their dtype, sandwich norms, and soft-capped attention scores and
logits (in the fused loss too, values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trilogy
from trilogy import ModelConfig
from trilogy.blocks.attention import attend
from trilogy.blocks.embedding import Embeddings
from trilogy.blocks.heads import LMHead
from trilogy.blocks.layer import TransformerLayer
from trilogy.blocks.loss import linear_cross_entropy
from trilogy.blocks.norm import RMSNorm
from trilogy.blocks.position import RotaryEmbedding, apply_rotary

from .convert_helpers import perturb

pytestmark = pytest.mark.usefixtures("one_thread")


def rotate_half(x):
    half = x.size(-1) // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def partial_rotary_reference(x, cos, sin):
    """GPT-NeoX's and Phi-3's apply_rotary_pos_emb: rotate the first cos.size(-1) dims, pass the rest."""
    rotary = cos.size(-1)
    turned, passed = x[..., :rotary], x[..., rotary:]
    return torch.cat([turned * cos + rotate_half(turned) * sin, passed], dim=-1)


def test_partial_rotary_turns_the_first_dims_and_passes_the_rest():
    qkv = torch.randn(2, 7, 3, 4, 12, dtype=torch.float64)  # a strided q, as attention takes it
    q = qkv.permute(2, 0, 3, 1, 4)[0].requires_grad_()
    rotary = RotaryEmbedding(6, theta=500.0).double()
    cos, sin = (t.double() for t in rotary(torch.arange(3, 10)[None]))
    assert cos.shape == (1, 1, 7, 6)
    out = apply_rotary(q, cos, sin)
    expected = partial_rotary_reference(q, cos, sin)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[..., 6:], q[..., 6:], rtol=0, atol=0)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, q, grad)[0], torch.autograd.grad(expected, q, grad)[0])


def test_rotary_fraction_sets_the_stack_rotary_dims_and_checks_them():
    config = ModelConfig.from_preset("tiny-llama", d_head=12, rotary_fraction=0.5)
    assert config.rotary_dims == 6 and trilogy.build(config).stack.rotary.inv_freq.shape == (3,)
    with pytest.raises(trilogy.TrilogyError, match="even, non-zero"):
        ModelConfig.from_preset("tiny-llama", d_head=12, rotary_fraction=0.25)  # 3 dims
    with pytest.raises(trilogy.TrilogyError, match="rotary positions"):
        ModelConfig.from_preset("tiny-gpt2", rotary_fraction=0.5)  # learned positions


def layer_and_input(**changes):
    config = ModelConfig.from_preset("tiny-llama", dropout=0.0, **changes)
    torch.manual_seed(0)
    layer = TransformerLayer(config).eval()
    perturb(layer, seed=1)
    return layer, torch.randn(2, 5, config.d_model)


def attention(layer, x):
    return layer.self_attn(x, is_causal=True)[0]


def test_parallel_residual_adds_both_branches_of_the_input():
    layer, x = layer_and_input(parallel_residual=True)
    expected = x + attention(layer, layer.self_attn_norm(x)) + layer.mlp(layer.mlp_norm(x))
    torch.testing.assert_close(layer(x, is_causal=True)[0], expected)
    sequential = x + attention(layer, layer.self_attn_norm(x))
    sequential = sequential + layer.mlp(layer.mlp_norm(sequential))
    assert not torch.allclose(layer(x, is_causal=True)[0], sequential, atol=1e-3)


def test_sandwich_norms_norm_each_branch_output_before_it_is_added():
    """Gemma 2's layer: x + post_attention_layernorm(attn(input_layernorm(x))), then the same for the MLP."""
    layer, x = layer_and_input(sandwich_norm=True)
    h = x + layer.self_attn_post_norm(attention(layer, layer.self_attn_norm(x)))
    expected = h + layer.mlp_post_norm(layer.mlp(layer.mlp_norm(h)))
    torch.testing.assert_close(layer(x, is_causal=True)[0], expected)


@pytest.mark.parametrize("changes,message", [
    (dict(parallel_residual=True, norm_position="post"), "pre-norm"),
    (dict(sandwich_norm=True, norm_position="post"), "pre-norm"),
    (dict(attention_softcap=0.0), "positive"),
    (dict(logit_softcap=-1.0), "positive"),
    (dict(norm="layernorm", norm_weight_offset=1.0), "RMSNorm"),
])
def test_option_combinations_no_checkpoint_uses_are_refused(changes, message):
    with pytest.raises(trilogy.TrilogyError, match=message):
        ModelConfig.from_preset("tiny-llama", **changes)


def softcapped_attention_reference(q, k, v, scale, cap):
    """Gemma 2's eager attention: scaled scores, tanh(s / cap) * cap, the causal mask, softmax, values."""
    groups = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-2, -1) * scale
    scores = torch.tanh(scores / cap) * cap
    causal = torch.ones(q.size(2), k.size(2), dtype=torch.bool).tril(k.size(2) - q.size(2))
    weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    return weights @ v


@pytest.mark.parametrize("n_kv", [4, 2])
def test_attention_softcap_caps_the_scaled_scores(n_kv):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 6, 8, generator=generator) * 4  # scores far beyond the cap, so that it bites
    k, v = (torch.randn(2, n_kv, 6, 8, generator=generator) * 4 for _ in range(2))
    out, _ = attend(q, k, v, is_causal=True, scale=0.3, softcap=5.0)
    torch.testing.assert_close(out, softcapped_attention_reference(q, k, v, 0.3, 5.0))
    uncapped, _ = attend(q, k, v, is_causal=True, scale=0.3)
    assert not torch.allclose(out, uncapped, atol=1e-2)


def test_attention_softcap_in_a_model_runs_the_cached_step_alike():
    model = trilogy.build(ModelConfig.from_preset("tiny-llama", attention_softcap=2.0, logit_softcap=3.0)).eval()
    perturb(model, seed=1, std=0.3)
    ids = torch.randint(3, 1024, (2, 9), generator=torch.Generator().manual_seed(2))
    cached = model.generate(ids, max_new_tokens=6, eos_token_id=None)
    full = ids
    for _ in range(6):
        full = torch.cat([full, model(full)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, full)
    assert model(ids).abs().max() < 3.0


def test_lm_head_softcap():
    head = LMHead(8, 11, softcap=2.5)
    hidden = torch.randn(3, 4, 8) * 5
    torch.testing.assert_close(head(hidden), torch.tanh(head.proj(hidden) / 2.5) * 2.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_loss_with_logit_softcap_matches_the_plain_path(dtype, bias):
    """Values and gradients of the chunked loss through the cap equal autograd through tanh on the full logits,
    with ignored rows and several chunks (the fp32 path reuses its buffers, the bf16 one does not)."""
    generator = torch.Generator().manual_seed(0)
    hidden = (torch.randn(13, 8, generator=generator) * 3).to(dtype).requires_grad_()
    weight = torch.randn(17, 8, generator=generator).to(dtype).requires_grad_()
    bias_ = torch.randn(17, generator=generator).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, 17, (13,), generator=generator)
    labels[[2, 7]] = -100
    total, count, _ = linear_cross_entropy(hidden, weight, bias_, labels, chunk_rows=5, softcap=4.0)
    total.backward()
    ours = [t.grad for t in (hidden, weight, bias_) if t is not None]
    for t in (hidden, weight, bias_):
        if t is not None:
            t.grad = None
    logits = F.linear(hidden.float(), weight.float(), bias_.float() if bias_ is not None else None)
    expected = F.cross_entropy(torch.tanh(logits / 4.0) * 4.0, labels, reduction="sum")
    expected.backward()
    theirs = [t.grad for t in (hidden, weight, bias_) if t is not None]
    tolerance = {} if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    assert count == 11
    torch.testing.assert_close(total, expected, **tolerance)
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.float(), reference.float(), **tolerance)


def test_model_loss_goes_through_the_logit_softcap():
    model = trilogy.build(ModelConfig.from_preset("tiny-llama", logit_softcap=1.5)).eval()
    perturb(model, seed=1, std=0.3)
    ids = torch.randint(3, 1024, (2, 9), generator=torch.Generator().manual_seed(2))
    out = model.run(ids, labels=ids)
    expected = F.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
    torch.testing.assert_close(out.loss, expected)


def gemma_rms_norm(x, weight, eps):
    """transformers' GemmaRMSNorm: in fp32, times (1 + weight), cast back."""
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return (normed * (1.0 + weight.float())).type_as(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_with_a_unit_offset_is_gemmas(dtype):
    norm = RMSNorm(48, eps=1e-6, offset=1.0)
    assert torch.equal(norm.weight, torch.zeros(48))  # the scale starts at 1
    with torch.no_grad():
        norm.weight.uniform_(-0.5, 0.5)
    norm = norm.to(dtype)
    x = (torch.randn(3, 5, 48) * 3).to(dtype).requires_grad_()
    out = norm(x)
    expected = gemma_rms_norm(x, norm.weight, 1e-6)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, **tolerance)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, norm.weight), grad)
    theirs = torch.autograd.grad(expected, (x, norm.weight), grad)
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference, **tolerance)


def test_embedding_scale_is_rounded_to_the_embeddings_dtype():
    """Gemma multiplies by sqrt(d_model) cast to the weights' dtype: 55.43 is 55.5 in bf16."""
    config = ModelConfig.from_preset("tiny-llama", d_model=3072, n_heads=4, embedding_scale=3072**0.5)
    with torch.device("meta"):
        embeddings = Embeddings(config)
    embeddings.tokens = torch.nn.Embedding(7, 3072).to(torch.bfloat16)
    ids = torch.arange(7)[None]
    weight = embeddings.tokens.weight
    assert torch.equal(embeddings(ids)[0], weight * torch.tensor(3072**0.5).to(torch.bfloat16))
    assert not torch.equal(embeddings(ids)[0], (weight.float() * 3072**0.5).to(torch.bfloat16))


@pytest.mark.parametrize("changes", [dict(), dict(attention_softcap=5.0)], ids=["return-attention", "softcap"])
def test_a_right_padded_sliding_window_on_the_explicit_path_stays_finite(changes):
    """A padded query whose window holds only padding sees no key; its row is opened as ``masks.combine``
    opens the others, else its NaN reaches the real positions through the values (0 * NaN) on the explicit
    path, which soft-capping, return_attention and CPU attention dropout take."""
    model = trilogy.build(ModelConfig.from_preset("tiny-llama", sliding_window=3, **changes)).eval()
    ids = torch.randint(3, 1000, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    with torch.no_grad():
        explicit = model.run(ids, mask, return_attention=True).logits
    assert not explicit.isnan().any()
    if not changes:
        with torch.no_grad():
            torch.testing.assert_close(explicit[mask.bool()], model.run(ids, mask).logits[mask.bool()])
