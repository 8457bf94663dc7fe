"""Property tests over random shapes and masks: the masked models never look where they must not."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trilogy.blocks.attention import attend
from trilogy.blocks.masks import causal_mask, combine, padding_mask

from .conftest import tiny

MODELS = {name: tiny(name) for name in ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]}
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def padded_batch(draw, max_batch=3, max_len=12):
    batch = draw(st.integers(1, max_batch))
    length = draw(st.integers(1, max_len))
    lengths = draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 1000, (batch, length), generator=g)
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
    noise = torch.randint(3, 1000, (batch, length), generator=g)
    return ids, mask, noise


@SETTINGS
@given(padded_batch(), st.sampled_from(sorted(MODELS)))
def test_padded_tokens_never_change_real_outputs(batch, name):
    ids, mask, noise = batch
    model = MODELS[name]
    changed = torch.where(mask.bool(), ids, noise)
    target = ids[:, :1]  # encoder-decoder: a fixed decoder input; the padding varies in the source
    with torch.no_grad():
        if model.config.arch == "encoder-decoder":
            a, b = (model(x, target, attention_mask=mask) for x in (ids, changed))
        else:
            a, b = (model(x, attention_mask=mask) for x in (ids, changed))
    if model.config.arch == "encoder-decoder":  # the source padding is masked in the encoder and cross-attention
        torch.testing.assert_close(a, b)
    else:
        real = mask.bool()
        torch.testing.assert_close(a[real], b[real])


@SETTINGS
@given(padded_batch(max_len=10), st.sampled_from(["tiny-gpt2", "tiny-llama"]), st.data())
def test_future_tokens_never_change_earlier_outputs(batch, name, data):
    ids, _, noise = batch
    cut = data.draw(st.integers(0, ids.size(1) - 1))
    changed = ids.clone()
    changed[:, cut:] = noise[:, cut:]
    model = MODELS[name]
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :cut], model(changed)[:, :cut])


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**16))
def test_attend_weights_are_zero_where_masked_and_rows_sum_to_one(batch, heads, query_len, key_len, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, query_len, 8, generator=g)
    k = torch.randn(batch, heads, key_len, 8, generator=g)
    v = torch.randn(batch, heads, key_len, 8, generator=g)
    real = torch.rand(batch, key_len, generator=g) > 0.3
    real[:, -1] = True
    mask = combine(padding_mask(real), causal_mask(query_len, key_len))
    out, weights = attend(q, k, v, mask=mask, return_weights=True)
    fast, _ = attend(q, k, v, mask=mask)
    torch.testing.assert_close(out, fast, atol=1e-5, rtol=1e-4)
    assert (weights * ~mask).abs().sum() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch, heads, query_len))


@SETTINGS
@given(st.integers(1, 2), st.sampled_from([(4, 1), (4, 2), (6, 3)]), st.integers(1, 7), st.integers(0, 4),
       st.booleans(), st.integers(0, 2**16))
def test_grouped_query_attention_equals_attention_over_repeated_keys(batch, heads, new, past, causal, seed):
    """Query head h uses key/value head h // (H / K); both paths get there without copying the keys."""
    n_heads, n_kv = heads
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, n_heads, new, 8, generator=g)
    k, v = (torch.randn(batch, n_kv, past + new, 8, generator=g) for _ in range(2))
    mask = causal_mask(new, past + new) if causal else None  # (1, 1, T, S)
    repeated = {"k": k.repeat_interleave(n_heads // n_kv, 1), "v": v.repeat_interleave(n_heads // n_kv, 1)}
    scores = (q @ repeated["k"].transpose(-2, -1)) / 8**0.5
    if causal:
        scores = scores.masked_fill(~mask, float("-inf"))
    expected_weights = scores.softmax(-1)
    out, weights = attend(q, k, v, mask=mask, return_weights=True)
    fast, _ = attend(q, k, v, mask=mask)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_weights @ repeated["v"])
    torch.testing.assert_close(fast, expected_weights @ repeated["v"], atol=1e-5, rtol=1e-4)
