"""Generation: the KV cache gives the tokens of full re-computation; greedy and beam search give transformers'
tokens on the same weights; sampling is reproducible and draws from the filtered distribution; streaming;
the CLI; the errors a user can cause."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch.testing import assert_close
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

import trilogy
from trilogy.blocks.kv_cache import KeyValues, KVCache
from trilogy.cli import main as cli_main
from trilogy.generate import _choose, generate, generate_text, settings_for, stream

VOCAB = 97
PAD = 3  # not 0: transformers' beam search fills with EOS when the pad id is 0 (see the T5 test below)


pytestmark = pytest.mark.usefixtures("one_thread")


def spread_weights(model: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Random weights large enough that a tiny model's next-token choice changes from step to step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=generator) * std)
    return model.eval()


# --- the cache: tokens identical to recomputing everything ------------------------------------------------


def uncached_greedy(model, input_ids, attention_mask, new_tokens):
    """Greedy decoding that re-runs the model on the whole sequence for every token (no cache)."""
    model.eval()
    with torch.no_grad():
        if isinstance(model, trilogy.EncoderDecoderTransformer):
            out = torch.zeros(input_ids.size(0), 1, dtype=torch.long)
            for _ in range(new_tokens):
                logits = model.run(input_ids, out, attention_mask).logits
                out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            return out
        out, mask = input_ids, attention_mask
        for _ in range(new_tokens):
            logits = model.run(out, mask).logits
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1) if mask is not None else None
        return out


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama", "tiny-t5"])
def test_cached_decoding_gives_the_tokens_of_full_recomputation(preset):
    model = spread_weights(trilogy.build(preset))
    ids = torch.randint(4, 1024, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding (decoder-only); for T5 the same zeros pad the source
    mask[2, :2] = 0
    new = 14
    cached = generate(model, ids, mask, max_new_tokens=new, eos_token_id=None)
    assert torch.equal(cached, uncached_greedy(model, ids, mask, new))
    assert len(set(cached[0, -new:].tolist())) > 3  # the comparison is not between constant outputs


def test_the_cache_is_written_in_place_not_copied_each_step():
    model = trilogy.build("tiny-gpt2").eval()
    cache = KVCache.allocate(2, batch=1, n_kv_heads=4, capacity=20, d_head=16)
    buffer = cache.layers[0].self_kv.keys.untyped_storage()
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        for step in range(10):
            cache = model.run(ids, cache=cache).cache
            keys = cache.layers[0].self_kv.keys
            assert keys.untyped_storage().data_ptr() == buffer.data_ptr() and keys.size(2) == 3 + step
            ids = torch.tensor([[8 + step]])


def test_extending_doubles_the_buffer_when_it_is_full_and_keeps_the_values():
    past = KeyValues(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))  # no spare room
    new = torch.randn(2, 3, 1, 5)
    grown = past.extend(new, -new)
    assert torch.equal(grown.keys, torch.cat([past.keys, new], dim=2))
    assert torch.equal(grown.values, torch.cat([past.values, -new], dim=2))
    assert grown.keys.untyped_storage().nbytes() == 2 * 3 * 10 * 5 * 4  # room for 2 * 5 positions
    again = grown.extend(new, new)
    assert again.keys.data_ptr() == grown.keys.data_ptr()  # written into the room
    assert torch.equal(again.keys, torch.cat([past.keys, new, new], dim=2))


def close(actual, expected):
    assert_close(actual, expected, atol=1e-4, rtol=1e-4)  # spread weights give logits of tens


def last_logits(model, ids, cache):
    out = model.run(ids, cache=cache)
    return out.logits[:, -1], out.cache


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_a_cache_continued_twice_keeps_both_continuations_right(preset):
    """Branching: from one cache after the prompt, step A then step B; continuing A's cache must still give the
    logits of recomputing its whole sequence (B's keys were once written into the room A uses)."""
    model = spread_weights(trilogy.build(preset))
    prompt, a, b, after = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[9]]), torch.tensor([[10]]), torch.tensor([[11]])
    with torch.no_grad():
        _, start = last_logits(model, prompt, model.new_cache(1, 16))
        _, after_a = last_logits(model, a, start)
        logits_b, after_b = last_logits(model, b, start)
        logits_a_next, _ = last_logits(model, after, after_a)
        logits_b_next, _ = last_logits(model, after, after_b)
        full = model.run(torch.cat([prompt, a, after], dim=1)).logits[:, -1]
        close(logits_a_next, full)
        close(logits_b, model.run(torch.cat([prompt, b], dim=1)).logits[:, -1])
        close(logits_b_next, model.run(torch.cat([prompt, b, after], dim=1)).logits[:, -1])
    assert not torch.allclose(logits_a_next, logits_b_next)  # the two branches differ


def test_beam_reordering_is_in_place_and_refuses_the_overwritten_caches():
    model = spread_weights(trilogy.build("tiny-gpt2"))
    prompt = torch.tensor([[5, 6, 7], [8, 9, 10]])
    with torch.no_grad():
        _, cache = last_logits(model, prompt, model.new_cache(2, 16))
        buffer = cache.layers[0].self_kv.keys.data_ptr()
        swapped = cache.select(torch.tensor([1, 0]))
        assert swapped.layers[0].self_kv.keys.data_ptr() == buffer  # no new buffers
        logits, swapped = last_logits(model, torch.tensor([[11], [11]]), swapped)
        expected = model.run(torch.cat([prompt.flip(0), torch.tensor([[11], [11]])], dim=1)).logits[:, -1]
        close(logits, expected)
        assert swapped.layers[0].self_kv.keys.data_ptr() == buffer
        with pytest.raises(trilogy.TrilogyError, match="reordered in place"):
            model.run(torch.tensor([[11], [11]]), cache=cache)


def test_generate_text_keeps_the_notebook_results():
    model = spread_weights(trilogy.DecoderOnlyTransformer(200, d_model=32, n_heads=4, n_layers=2, d_ff=64))
    prompt = torch.randint(0, 200, (2, 5))
    expected = prompt
    with torch.no_grad():
        for _ in range(11):  # the notebook's loop: the whole sequence, every step
            expected = torch.cat([expected, model(expected)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate_text(model, prompt, max_length=16), expected)
    assert torch.equal(generate_text(model, prompt, max_length=16, temperature=0.5), expected)
    assert torch.equal(generate_text(model, prompt, max_length=3), prompt)


# --- parity with transformers --------------------------------------------------------------------------------


def hf_models():
    return {
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                           bos_token_id=1, eos_token_id=2, pad_token_id=PAD)),
        "llama": LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              bos_token_id=1, eos_token_id=2, pad_token_id=PAD)),
        "t5": T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                  num_heads=4, decoder_start_token_id=0, pad_token_id=0,
                                                  eos_token_id=1)),
        # partial rotary (a quarter of each head), parallel residual, q/k/v interleaved per head
        "gpt_neox": GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=64,
                                                     num_hidden_layers=2, num_attention_heads=4, bos_token_id=1,
                                                     eos_token_id=2, pad_token_id=PAD)),
        "phi3": Phi3ForCausalLM(Phi3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           partial_rotary_factor=0.5, sliding_window=4, bos_token_id=1,
                                           eos_token_id=2, pad_token_id=PAD)),  # decodes past its window
        "gemma": GemmaForCausalLM(GemmaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              head_dim=16, bos_token_id=1, eos_token_id=2, pad_token_id=PAD)),
    }


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """name -> (transformers model, the same weights loaded by trilogy.from_pretrained)."""
    torch.manual_seed(0)
    result = {}
    for name, reference in hf_models().items():
        spread_weights(reference, std=0.3 if name != "t5" else 1.0)
        folder = tmp_path_factory.mktemp(name)
        reference.save_pretrained(folder)
        result[name] = (reference, trilogy.from_pretrained(folder))
    return result


def prompts(name: str, batch: int):
    """(ids, mask): batch 1 without padding, or rows of different lengths (left padding for decoder-only,
    right padding of the source for T5)."""
    ids = torch.randint(4, VOCAB, (batch, 8), generator=torch.Generator().manual_seed(batch))
    mask = torch.ones_like(ids)
    if batch > 1:
        lengths = [8, 5, 3][:batch]
        for row, length in enumerate(lengths):
            if name == "t5":
                mask[row, length:] = 0
            else:
                mask[row, : 8 - length] = 0
        ids = ids.masked_fill(mask == 0, 0 if name == "t5" else PAD)
    return ids, mask


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beams"])
@pytest.mark.parametrize("batch", [1, 3], ids=["batch1", "padded-batch"])
@pytest.mark.parametrize("name", ["gpt2", "llama", "t5", "gpt_neox", "phi3", "gemma"])
def test_tokens_identical_to_transformers_generate(pairs, name, batch, num_beams):
    reference, ours = pairs[name]
    ids, mask = prompts(name, batch)
    options = dict(max_new_tokens=10, num_beams=num_beams, pad_token_id=PAD)
    with torch.no_grad():
        free = reference.generate(ids, attention_mask=mask, eos_token_id=None, **options)
    assert torch.equal(generate(ours, ids, mask, eos_token_id=None, **options), free)
    # again with an EOS id that the first row produces early, so rows finish and get padded
    eos = int(free[0, -7])
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, eos_token_id=eos, **options)
    ours_out = ours.generate(ids, mask, eos_token_id=eos, **options)
    assert torch.equal(ours_out, expected)
    if num_beams == 1:
        assert (ours_out[0] == eos).any()


def test_t5_beam_search_pads_with_the_pad_token_where_transformers_writes_eos(pairs):
    """transformers' beam search fills finished beams with ``pad_token_id or eos_token_id``, i.e. EOS when the
    pad id is 0 (T5). We pad with the pad token, as its greedy search does; otherwise the tokens agree."""
    reference, ours = pairs["t5"]
    ids, mask = prompts("t5", 3)
    free = ours.generate(ids, mask, max_new_tokens=10, num_beams=3, eos_token_id=None)
    eos = int(free[0, 3])
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=3, eos_token_id=eos)
    out = ours.generate(ids, mask, max_new_tokens=10, num_beams=3, eos_token_id=eos)
    after_eos = (out == eos).int().cumsum(dim=1) - (out == eos).int() > 0
    assert after_eos.any() and (out[after_eos] == 0).all()
    assert torch.equal(torch.where(after_eos, eos, out), expected)


# --- sampling -------------------------------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone():
    model = spread_weights(trilogy.build("tiny-llama"))
    ids = torch.randint(4, 1024, (2, 5), generator=torch.Generator().manual_seed(3))
    options = dict(max_new_tokens=12, do_sample=True, temperature=0.9, top_k=40, top_p=0.95, seed=7)
    torch.manual_seed(123)
    first = generate(model, ids, **options)
    state = torch.random.get_rng_state()
    second = generate(model, ids, **options)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, second)
    assert not torch.equal(first, generate(model, ids, **{**options, "seed": 8}))


def test_sampling_draws_from_the_filtered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).expand(20000, -1)
    sequences = torch.zeros(20000, 1, dtype=torch.long)
    model = trilogy.build("tiny-gpt2")

    def frequencies(**options):
        settings = settings_for(model, do_sample=True, **options)
        draws = _choose(logits, sequences, settings, torch.Generator().manual_seed(0))
        return torch.bincount(draws, minlength=6).float() / len(draws)

    expected = torch.softmax(logits[0] / 0.7, dim=-1)
    assert torch.allclose(frequencies(temperature=0.7), expected, atol=0.015)
    top3 = torch.softmax(logits[0, :3], dim=-1)
    assert torch.allclose(frequencies(top_k=3), torch.cat([top3, torch.zeros(3)]), atol=0.015)
    probs = torch.softmax(logits[0], dim=-1)  # top-p 0.8 keeps the fewest tokens whose mass reaches 0.8
    kept = int((probs.cumsum(0) < 0.8).sum()) + 1
    nucleus = torch.cat([probs[:kept] / probs[:kept].sum(), torch.zeros(6 - kept)])
    assert torch.allclose(frequencies(top_p=0.8), nucleus, atol=0.015)


def test_repetition_penalty_matches_transformers(pairs):
    reference, ours = pairs["gpt2"]
    ids, mask = prompts("gpt2", 3)
    options = dict(max_new_tokens=10, repetition_penalty=1.8, pad_token_id=PAD, eos_token_id=None)
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, **options)
    assert torch.equal(ours.generate(ids, mask, **options), expected)


# --- streaming ------------------------------------------------------------------------------------------------


def test_stream_yields_each_token_before_computing_the_next():
    model = spread_weights(trilogy.build("tiny-gpt2"))
    ids = torch.randint(4, 1024, (2, 6))
    calls = []
    hook = model.embeddings.register_forward_hook(lambda *_: calls.append(1))
    tokens = stream(model, ids, max_new_tokens=8, eos_token_id=None)
    assert calls == []  # nothing runs before the first token is asked for
    first = next(tokens)
    assert len(calls) == 1 and first.shape == (2,)
    rest = list(tokens)
    hook.remove()
    assert len(calls) == 8  # one step per token, none after the last
    streamed = torch.cat([ids, first[:, None], *(t[:, None] for t in rest)], dim=1)
    assert torch.equal(streamed, generate(model, ids, max_new_tokens=8, eos_token_id=None))


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
    (dict(top_p=0.0, do_sample=True), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5, do_sample=True), r"top_p must be in \(0, 1\]"),
    (dict(temperature=0.0, do_sample=True), "temperature must be > 0 when sampling"),
    (dict(top_k=-2, do_sample=True), "top_k must be an integer >= 0"),
    (dict(num_beams=0), "num_beams must be an integer >= 1"),
    (dict(max_new_tokens=130), r"exceed the model's max_seq_len=128; ask for at most 124"),
])
def test_bad_options_are_refused_with_the_value_named(options, message):
    model = trilogy.build("tiny-gpt2")
    with pytest.raises(ValueError, match=message):
        model.generate(torch.tensor([[5, 6, 7, 8]]), **options)


def test_a_prompt_that_fills_the_positions_and_an_encoder_are_refused():
    model = trilogy.build("tiny-gpt2")
    with pytest.raises(ValueError, match="already fills the model's 128 positions"):
        model.generate(torch.full((1, 128), 5))
    with pytest.raises(TypeError, match="encoder-only model predicts masked tokens"):
        trilogy.build("tiny-bert").generate(torch.tensor([[5, 6]]))
    with pytest.raises(ValueError, match="beam search cannot stream"):
        stream(model, torch.tensor([[5, 6]]), num_beams=2)


# --- the CLI ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny GPT-2 checkpoint with a byte-level BPE tokenizer trained here."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    tokenizer.train_from_iterator(["the cat sat on the mat", "a dog and a cat", "héllo wörld"] * 20, trainer)
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(vocab_size=320, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                           bos_token_id=0, eos_token_id=0))
    spread_weights(reference)
    folder = tmp_path_factory.mktemp("gpt2-tok")
    reference.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder, tokenizer


def test_cli_generates_with_the_checkpoint_tokenizer(checkpoint, capsys):
    folder, tokenizer = checkpoint
    prompt_ids = tokenizer.encode("the cat").ids
    expected = trilogy.from_pretrained(folder).generate(torch.tensor([prompt_ids]), max_new_tokens=9)
    new_ids = expected[0, len(prompt_ids):]
    new_ids = new_ids[: (new_ids == 0).int().argmax() + 1] if (new_ids == 0).any() else new_ids
    assert cli_main(["generate", str(folder), "--prompt", "the cat", "--max-new-tokens", "9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prompt_ids"] == prompt_ids and result["new_ids"] == new_ids.tolist()
    assert cli_main(["generate", str(folder), "--prompt", "the cat", "--max-new-tokens", "9"]) == 0
    streamed = capsys.readouterr().out
    assert streamed == "the cat" + tokenizer.decode(new_ids.tolist(), skip_special_tokens=True) + "\n"


@pytest.mark.parametrize("argv, message", [
    (["--top-p", "1.5"], r"top_p must be in \(0, 1\]"),
    (["--temperature", "0"], "temperature must be > 0"),
    (["--max-new-tokens", "-3"], "max_new_tokens must be an integer >= 0"),
    (["--num-beams", "0"], "num_beams must be an integer >= 1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(checkpoint, capsys, argv, message):
    folder, _ = checkpoint
    assert cli_main(["generate", str(folder), "--prompt", "the cat", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("trilogy generate: error:")
    assert __import__("re").search(message, err)
