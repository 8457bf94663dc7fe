"""Block options of Mistral and Qwen, for any family: sliding-window attention with per-layer kinds (the window
mask; a sliding layer's KV cache stays bounded however long decoding goes; bidirectional and prefix-LM windows),
q/k norms and q/k/v-only biases; what ``trilogy.sizing`` counts for them against built models, torch's FLOP
counter and the measured cache. Parity with transformers is in ``test_convert_parity.py`` and
``test_decoder_types.py``."""

from __future__ import annotations

import warnings

import pytest
import torch

import trilogy
from trilogy import ModelConfig
from trilogy.blocks.masks import causal_mask, window_mask
from trilogy.errors import TrilogyError
from trilogy.generate import generate
from trilogy.models import build_model
from trilogy.sizing import count_parameters, kv_cache_bytes

from .test_generate import spread_weights, uncached_greedy
from .test_sizing import check_training
from .test_sizing import test_flops_match_flop_counter as check_flops

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = 4
#: a Llama whose second layer slides (Qwen2's upper layers), with Qwen3's q/k norms and Qwen2's q/k/v biases
MIXED = dict(sliding_window=WINDOW, layer_attention=("full", "sliding"), qk_norm=True, qkv_bias=True)


def test_window_mask_reaches_window_minus_one_positions_either_way():
    reach = window_mask(3, 6, 3)[0, 0]  # queries at key positions 3, 4, 5
    assert reach.tolist() == [[False, True, True, True, True, True],
                              [False, False, True, True, True, True],
                              [False, False, False, True, True, True]]
    causal = (reach & causal_mask(3, 6)[0, 0]).sum(-1)
    assert causal.tolist() == [3, 3, 3]  # itself and the window - 1 before it


def test_layer_attention_is_checked_and_reaches_each_stack():
    config = ModelConfig.from_preset("tiny-t5", sliding_window=5, layer_attention=("sliding", "full", "full", "sliding"))
    encoder, decoder = config.structure.stacks
    assert encoder.windows == (5, None) and decoder.windows == (None, 5)
    assert ModelConfig.from_json(config.to_json()) == config  # a JSON list comes back as the tuple
    assert ModelConfig.from_preset("tiny-llama", sliding_window=3).structure.output.windows == (3, 3)
    assert ModelConfig.from_preset("tiny-llama").structure.output.layer_windows == ()
    for changes, message in [(dict(layer_attention=("full",)), "1 entries, the model has 2 layers"),
                             (dict(layer_attention=("sliding", "full")), "sliding_window is not set"),
                             (dict(layer_attention=("full", "local"), sliding_window=3), "'full', 'sliding'"),
                             (dict(sliding_window=0), "positive integer")]:
        with pytest.raises(TrilogyError, match=message):
            ModelConfig.from_preset("tiny-llama", **changes)


def attention_weights(model, ids, **kwargs):
    with torch.no_grad():
        out = model.run(ids, return_attention=True, **kwargs)
    return next(iter(out.attentions.values()))


def test_bidirectional_window_and_prefix_lm_window_are_configs():
    """An encoder's window reaches both ways; a prefix LM's hides the far keys of its prefix too, and decodes
    with the cache what it computes without one."""
    ids = torch.randint(4, 1000, (1, 9))
    encoder = build_model(ModelConfig.from_preset("tiny-bert", sliding_window=3, layer_attention=("sliding", "full")))
    sliding, full = attention_weights(encoder.eval(), ids)
    assert torch.equal(sliding[0, 0] > 0, window_mask(9, 9, 3)[0, 0])
    assert bool((full > 0).all())
    prefix_lm = spread_weights(build_model(ModelConfig.from_preset("tiny-prefix-lm", sliding_window=3)))
    weights = attention_weights(prefix_lm, ids, prefix_length=torch.tensor([5]))[0][0, 0] > 0
    in_prefix = torch.arange(9) < 5
    expected = (causal_mask(9, 9)[0, 0] | (in_prefix[:, None] & in_prefix[None, :])) & window_mask(9, 9, 3)[0, 0]
    assert torch.equal(weights, expected)
    cached = generate(prefix_lm, ids, max_new_tokens=6, eos_token_id=None)
    with torch.no_grad():
        seq = ids
        for _ in range(6):
            logits = prefix_lm.run(seq, prefix_length=torch.tensor([9])).logits
            seq = torch.cat([seq, logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(cached, seq)


def decode_and_measure(model, ids, mask, new_tokens):
    """Greedy decoding step by step; (the tokens, per step per layer (cached positions, buffer positions))."""
    inputs, tokens = model.start(ids, mask, max_new_tokens=new_tokens)
    cache = model.new_cache(ids.size(0), ids.size(1) + new_tokens)
    sizes = []
    with torch.no_grad():
        for _ in range(new_tokens):
            logits, cache = model.step(inputs, cache)
            sizes.append([(layer.self_kv.length, layer.self_kv.buffers.keys.size(2)) for layer in cache.layers])
            assert cache.length == tokens.size(1)
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
            inputs = inputs.advance(tokens[:, -1:])
    return tokens, sizes


def test_a_sliding_layer_cache_stays_bounded_far_past_the_window():
    model = spread_weights(build_model(ModelConfig.from_preset("tiny-llama", **MIXED)))
    ids = torch.randint(4, 1000, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, :2] = 0
    new = 40  # 50 positions, 12x the window
    tokens, sizes = decode_and_measure(model, ids, mask, new)
    assert torch.equal(tokens, uncached_greedy(model, ids, mask, new))
    assert len(set(tokens[0, -new:].tolist())) > 3  # the comparison is not between constant outputs
    full, sliding = zip(*sizes, strict=True)
    assert [kept for kept, _ in full] == list(range(11, 11 + new))  # grows with the sequence
    assert all(kept == WINDOW - 1 for kept, _ in sliding)  # all the next query reaches besides itself
    assert max(room for _, room in sliding) <= 2 * WINDOW
    assert generate(model, ids, mask, max_new_tokens=new, eos_token_id=None).equal(tokens)


@pytest.mark.parametrize("name,changes", [
    ("tiny-t5", dict(sliding_window=3, layer_attention=("sliding", "full", "full", "sliding"))),  # relative bias
    ("tiny-gpt2", dict(sliding_window=3)),
])
def test_cached_decoding_with_windows_in_other_families(name, changes):
    model = spread_weights(build_model(ModelConfig.from_preset(name, **changes)))
    ids = torch.randint(4, 1000, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding for the decoder; the source's for T5
    cached = generate(model, ids, mask, max_new_tokens=12, eos_token_id=None)
    assert torch.equal(cached, uncached_greedy(model, ids, mask, 12))
    assert len(set(cached[0, -12:].tolist())) > 3


def test_a_sliding_cache_continued_twice_and_reordered_keeps_both_right():
    """Branching and in-place beam reordering over a sliding layer's moving view of its buffers."""
    model = spread_weights(build_model(ModelConfig.from_preset("tiny-llama", **MIXED)))
    prompt = torch.randint(4, 1000, (2, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        start = model.run(prompt, cache=model.new_cache(2, 32)).cache
        a, b = start, start
        seq_a, seq_b = prompt, prompt
        for step in range(2 * WINDOW + 1):  # past the buffers' room: the kept keys move to new buffers
            token_a, token_b = torch.full((2, 1), 10 + step), torch.full((2, 1), 500 + step)
            a = model.run(token_a, cache=a).cache
            b = model.run(token_b, cache=b).cache
            seq_a, seq_b = torch.cat([seq_a, token_a], 1), torch.cat([seq_b, token_b], 1)
            b = b.select(torch.tensor([1, 0]))
            seq_b = seq_b.flip(0)
        last = torch.tensor([[7], [8]])
        for cache, seq in ((a, seq_a), (b, seq_b)):
            logits = model.run(last, cache=cache).logits[:, -1]
            expected = model.run(torch.cat([seq, last], 1)).logits[:, -1]
            torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


VARIANTS = [dict(MIXED), dict(sliding_window=3), dict(qkv_bias=True, bias=False), dict(qk_norm=True)]


@pytest.mark.parametrize("changes", VARIANTS)
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-t5"])
def test_parameters_of_the_block_options(name, changes):
    if name == "tiny-t5" and "layer_attention" in changes:
        changes = dict(changes, layer_attention=changes["layer_attention"] * 2)
    config = ModelConfig.from_preset(name, **changes)
    assert count_parameters(config) == build_model(config).num_parameters()


def test_flops_of_the_block_options():
    check_flops("tiny-llama", MIXED)  # the window's masked scores are computed all the same
    check_flops("tiny-t5", dict(qk_norm=True, qkv_bias=True, bias=False))


def test_training_memory_with_qk_norm():
    check_training(ModelConfig.from_preset("tiny-llama", qk_norm=True, dropout=0.0), batch=2, seq=128, src=None)


def test_kv_cache_bytes_are_the_buffers_decoding_holds():
    config = ModelConfig.from_preset("tiny-llama", **MIXED)
    model = build_model(config).eval()
    for prompt, new in ((3, 2), (6, 30), (20, 1)):
        ids = torch.randint(4, 1000, (2, prompt))
        _, sizes = decode_and_measure(model, ids, None, new)
        g = config.n_kv_heads * config.d_head
        held = sum(2 * 2 * g * room * 4 for _, room in sizes[-1])  # keys and values, 2 rows, fp32
        assert kv_cache_bytes(config, 2, prompt + new, None, 4)["self"] == held
    full = kv_cache_bytes(config.replace(sliding_window=None, layer_attention=None), 2, 4096, None, 2)["self"]
    assert kv_cache_bytes(config, 2, 4096, None, 2)["self"] < 0.51 * full


def test_a_trilogy_model_with_the_options_saves_as_the_class_that_computes_it(tmp_path):
    """A config picks its Hugging Face class by what it computes; one no class computes is written in trilogy's
    format and loads back."""
    cases = {"qwen2": dict(bias=False, qkv_bias=True, sliding_window=3, layer_attention=("full", "sliding")),
             "qwen3": dict(qk_norm=True, sliding_window=3), "mistral": dict(sliding_window=3),
             "trilogy": dict(qk_norm=True, qkv_bias=True, bias=False)}
    for model_type, changes in cases.items():
        model = build_model(ModelConfig.from_preset("tiny-llama", **changes)).eval()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.save_pretrained(tmp_path / model_type)
        assert bool(caught) == (model_type == "trilogy"), [str(w.message) for w in caught]
        loaded = trilogy.from_pretrained(tmp_path / model_type)
        assert loaded.config.extra.get("hf_architecture", "trilogy").lower().startswith(model_type)
        ids = torch.randint(4, 1000, (1, 9))
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)

