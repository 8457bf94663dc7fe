"""GGUF files (llama.cpp's): tiny Llama, Qwen2, Qwen3, Mistral, Gemma 2, Gemma 3 and Phi-3 files written here as
llama.cpp writes them (F32, F16, BF16, Q8_0, Q4_0/Q4_1/Q5_0/Q5_1 and K-quant tensors; byte-level BPE and
SentencePiece vocabularies, Gemma's among them) load with transformers' logits, weights, greedy tokens, token ids
and chat prompts from the same file (``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``, which
dequantises with the same gguf package); files with what transformers' GGUF loader does not read (Gemma's
soft-caps and query scale, Gemma 3's RoPE scaling, Phi-3's partial rotary) with the logits and greedy tokens of
the model they were written from; and what trilogy does not read is a one-line CheckpointError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import trilogy
from trilogy import CheckpointError
from trilogy.convert.gguf_file import dequantizable
from trilogy.generate import generate

from .convert_helpers import max_diff, perturb
from .gguf_helpers import (
    GEMMA_NAMES,
    GGUF_NAMES,
    PHI3_NAMES,
    byte_level_vocab,
    decoder_metadata,
    gemma_metadata,
    gemma_vocab,
    gguf_tensors,
    phi3_metadata,
    random_blocks,
    sentencepiece_vocab,
    write_gguf,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GEMMA_CHAT = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
              "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
              "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant"
          "<|end_header_id|>\n\n{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "where is the cat?"}]
STRINGS = ["the cat sat on the mat", " where is  the dog?\n\nIt's 12345 steps", "héllo wörld 🙂 naïve",
           "<|im_start|>user\nhi<|im_end|>", "<s> the </s> <think>mat</think>", "xyzzy\t\tQ", ""]
SIZES = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5)


def mixed(name: str, values: np.ndarray) -> Q:
    """A quantised file's types: llama.cpp's Q8_0 and the older block types, F16 and BF16."""
    for part, kind in (("ffn_down", Q.Q8_0), ("ffn_up", Q.Q4_1), ("ffn_gate", Q.Q5_0), ("attn_q.", Q.F16),
                       ("attn_k.", Q.Q5_1), ("attn_v", Q.BF16), ("attn_qkv", Q.Q5_1), ("attn_output", Q.Q4_0),
                       ("token_embd", Q.Q8_0), ("output", Q.Q8_0)):
        if part in name:
            return kind
    raise AssertionError(name)


#: each K-quant on some tensor; random valid blocks (the gguf package dequantises K-quants, but cannot write them)
K_QUANTS = {"attn_q.": Q.Q4_K, "attn_k.": Q.Q5_K, "attn_v": Q.Q6_K, "attn_output": Q.Q3_K, "ffn_gate": Q.Q2_K,
            "ffn_up": Q.Q4_K, "ffn_down": Q.Q6_K, "token_embd": Q.Q6_K, "output": Q.Q5_K}


@dataclass
class Case:
    arch: str  # general.architecture
    make: object  # vocab size -> the transformers model the file is written from
    vocab: dict  # the tokenizer's metadata
    kinds: object  # (GGUF name, values) -> GGML type; None: random K-quant blocks
    permute: bool = False  # llama.cpp permutes Llama's q/k rows
    name: str = "tiny"
    template: str | None = None
    head_dim: int | None = None
    metadata: object = None  # config -> the {arch}.* metadata, when not decoder_metadata's
    names: dict = field(default_factory=lambda: GGUF_NAMES)  # transformers' names -> GGUF names
    norm_shift: float = 0.0  # added to every norm weight (Gemma's 1)
    transformers_reads_it: bool = True  # False: the written model is the reference


def _llama(vocab: int, **changes):
    return LlamaForCausalLM(LlamaConfig(**{**SIZES, **changes}, vocab_size=vocab, tie_word_embeddings=False))


def _gemma2(vocab: int, **changes):
    """Heads of 256, as transformers' GGUF loader assumes for the query scale (Gemma2Config's 256); windows of
    4 on layers 0 and 2."""
    sizes = {**SIZES, "num_hidden_layers": 3, "head_dim": 256, "sliding_window": 4, **changes}
    return Gemma2ForCausalLM(Gemma2Config(**sizes, vocab_size=vocab, pad_token_id=0, eos_token_id=1, bos_token_id=2))


def _gemma3(vocab: int, **changes):
    """Six layers, the last one full (llama.cpp's and transformers' pattern); heads of 256, as for Gemma 2."""
    sizes = {**SIZES, "num_hidden_layers": 6, "head_dim": 256, "sliding_window": 4, **changes}
    return Gemma3ForCausalLM(Gemma3TextConfig(**sizes, vocab_size=vocab, pad_token_id=0, eos_token_id=1,
                                              bos_token_id=2))


def _phi3(vocab: int, **changes):
    config = Phi3Config(**{**SIZES, "sliding_window": 2047, **changes}, vocab_size=vocab, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2)
    return Phi3ForCausalLM(config)


GEMMA_FILE = dict(names=GEMMA_NAMES, norm_shift=1.0)  # llama.cpp stores 1 + w
#: Gemma 3 4B and up: linear RoPE scaling of the full layers; a logit soft-cap; heads of 32 with their scale
SCALED_ROPE = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
               "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}}


CASES = {
    "llama-f32": Case("llama", _llama, byte_level_vocab(
        "llama-bpe", ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
        add_bos=True), lambda name, values: Q.F32, permute=True, template=LLAMA3),
    "llama-quantised": Case("llama", _llama, byte_level_vocab("llama-bpe", ["<|begin_of_text|>", "<|eot_id|>"]),
                            mixed, permute=True),
    "llama-k-quants": Case("llama", lambda vocab: _llama(vocab, hidden_size=256, intermediate_size=512),
                           sentencepiece_vocab(), None, permute=True),
    "qwen2": Case("qwen2", lambda vocab: Qwen2ForCausalLM(Qwen2Config(**SIZES, vocab_size=vocab)), byte_level_vocab(
        "qwen2", ["<|endoftext|>", "<|im_end|>", "<|im_start|>"], user_defined=("<think>", "</think>")), mixed,
        template=CHATML),
    "qwen3": Case("qwen3", lambda vocab: Qwen3ForCausalLM(Qwen3Config(**SIZES, vocab_size=vocab, head_dim=128)),
                  byte_level_vocab("qwen2", ["<|endoftext|>", "<|im_end|>", "<|im_start|>"]),
                  lambda name, values: Q.Q8_0, head_dim=128, template=CHATML),
    "mistral": Case("llama", lambda vocab: MistralForCausalLM(MistralConfig(**SIZES, vocab_size=vocab)),
                    sentencepiece_vocab(), lambda name, values: Q.Q8_0 if "ffn" in name else Q.F16, permute=True,
                    name="Mistral 7B Instruct v0.3"),
    "gemma2": Case("gemma2", _gemma2, gemma_vocab(), mixed, metadata=lambda c: gemma_metadata("gemma2", c),
                   **GEMMA_FILE),
    "gemma2-softcaps": Case("gemma2", lambda vocab: _gemma2(vocab, head_dim=64, query_pre_attn_scalar=64,
                                                            attn_logit_softcapping=0.5, final_logit_softcapping=2.0),
                            gemma_vocab(), lambda name, values: Q.F32, metadata=lambda c: gemma_metadata("gemma2", c),
                            transformers_reads_it=False, **GEMMA_FILE),
    "gemma3": Case("gemma3", _gemma3, gemma_vocab(), lambda name, values: Q.Q8_0,
                   metadata=lambda c: gemma_metadata("gemma3", c), template=GEMMA_CHAT, **GEMMA_FILE),
    "gemma3-scaled": Case("gemma3", lambda vocab: _gemma3(vocab, head_dim=32, query_pre_attn_scalar=32,
                                                          rope_parameters=SCALED_ROPE, final_logit_softcapping=5.0),
                          gemma_vocab(), lambda name, values: Q.F32, metadata=lambda c: gemma_metadata("gemma3", c),
                          transformers_reads_it=False, **GEMMA_FILE),
    "phi3": Case("phi3", _phi3, sentencepiece_vocab() | {"tokenizer.ggml.padding_token_id": 0}, mixed,
                 metadata=phi3_metadata, names=PHI3_NAMES),
    "phi3-partial": Case("phi3", lambda vocab: _phi3(vocab, sliding_window=None, tie_word_embeddings=False,
                                                     rope_parameters={"rope_theta": 250000.0, "rope_type": "default",
                                                                      "partial_rotary_factor": 0.75}),
                         byte_level_vocab("llama-bpe", ["<|endoftext|>", "<|end|>"])
                         | {"tokenizer.ggml.padding_token_id": 0}, lambda name, values: Q.F32,
                         metadata=phi3_metadata, names=PHI3_NAMES, transformers_reads_it=False),
}
#: the files transformers' GGUF loader reads as they were written (the others: see the module's docstring)
READ_BY_TRANSFORMERS = [name for name, case in CASES.items() if case.transformers_reads_it]


def write_case(case: Case, path: Path):
    """The GGUF file of ``case`` and the transformers model it was written from (None for random blocks)."""
    torch.manual_seed(0)
    model = case.make(len(case.vocab["tokenizer.ggml.tokens"])).eval()
    perturb(model, std=0.1)
    config = model.config
    if case.kinds is None:
        tensors = gguf_tensors(model, lambda name, values: Q.F32, case.permute)
        for seed, (name, (values, _)) in enumerate(tensors.items()):
            kind = next((k for part, k in K_QUANTS.items() if part in name), None)
            if kind is not None and values.ndim == 2:
                tensors[name] = (random_blocks(kind, *values.shape, seed=seed), kind)
        model = None
    else:
        tensors = gguf_tensors(model, case.kinds, case.permute, case.names, case.norm_shift)
    fields = case.metadata(config) if case.metadata else decoder_metadata(case.arch, config, head_dim=case.head_dim)
    metadata = {"general.name": case.name, **fields, **case.vocab}
    if case.template is not None:
        metadata["tokenizer.chat_template"] = case.template
    write_gguf(path, case.arch, metadata, tensors)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """case name -> (the file, the model written into it or None, the reference: transformers' load of the file,
    or the written model where transformers' loader misreads the file)."""
    folder = tmp_path_factory.mktemp("gguf")
    result = {}

    def get(name: str):
        if name not in result:
            path = folder / f"{name}.gguf"
            written = write_case(CASES[name], path)
            reference = written
            if CASES[name].transformers_reads_it:
                reference = AutoModelForCausalLM.from_pretrained(folder, gguf_file=path.name).eval()
            result[name] = (path, written, reference)
        return result[name]

    return get


def ids_of(vocab: int, batch: int = 2, length: int = 9) -> torch.Tensor:
    return torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_transformers_load_of_the_same_file(files, name):
    path, written, reference = files(name)
    ours = trilogy.from_pretrained(path)
    # transformers reads a Mistral file (written as llama) as Llama, unless general.name is exactly "mistral",
    # where its loader fails (gguf has no "mistral" architecture)
    expected_class = "MistralForCausalLM" if name == "mistral" else type(reference).__name__
    assert ours.config.extra["hf_architecture"] == expected_class
    ids = ids_of(ours.config.vocab_size)
    with torch.no_grad():
        expected = reference(ids).logits
        assert max_diff(ours(ids), expected) <= 1e-4
        if name == "llama-f32":  # F32 holds the written model exactly
            assert max_diff(ours(ids), written(ids).logits) <= 1e-4
        assert expected.std() > 0.1  # not constant logits


@pytest.mark.parametrize("name", READ_BY_TRANSFORMERS)
def test_weights_are_transformers_dequantisation_and_save_as_hf(files, name, tmp_path):
    """Every weight, saved back under transformers' names, is bitwise what transformers dequantised from the file
    (q/k un-permuted as its loader does it), and transformers loads the saved folder."""
    path, _, reference = files(name)
    trilogy.from_pretrained(path).save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    expected = reference.state_dict()
    assert set(saved) == set(expected) - ({"lm_head.weight"} if reference.config.tie_word_embeddings else set())
    assert all(torch.equal(saved[key], expected[key]) for key in saved), [k for k in saved
                                                                         if not torch.equal(saved[k], expected[k])]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)[1]
    assert not any(loaded.values()), loaded


#: what each file transformers misreads sets that the others do not, as trilogy reads it
READ_FROM_METADATA = {
    "gemma2-softcaps": dict(attention_softcap=0.5, logit_softcap=2.0, scale=64**-0.5),
    "gemma3-scaled": dict(rope_linear_factor=8.0, rope_theta=1e6, rope_theta_local=2e4, logit_softcap=5.0,
                          scale=32**-0.5),
    "phi3-partial": dict(rotary_fraction=0.75, rope_theta=250000.0, sliding_window=None),
    "phi3": dict(sliding_window=2047),  # transformers' load has none, which 9 positions do not tell apart
}


@pytest.mark.parametrize("name", list(READ_FROM_METADATA))
def test_what_transformers_does_not_read_is_read_and_saves_as_hf(files, name, tmp_path):
    """The files whose metadata transformers' GGUF loader leaves out (their written model is the reference of
    the other tests): the config has it, and the saved folder loads in transformers with no missing or
    unexpected keys and the reference's logits."""
    path, _, reference = files(name)
    ours = trilogy.from_pretrained(path)
    assert {key: getattr(ours.config, key) for key in READ_FROM_METADATA[name]} == READ_FROM_METADATA[name]
    ours.save_pretrained(tmp_path)
    saved, loaded = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(loaded.values()), loaded
    ids = ids_of(ours.config.vocab_size)
    with torch.no_grad():
        assert max_diff(saved.eval()(ids).logits, reference(ids).logits) <= 1e-4


@pytest.mark.parametrize("name", [name for name in CASES if name != "llama-f32"])
def test_greedy_tokens_match_transformers_generate(files, name):
    path, _, reference = files(name)
    ours = trilogy.from_pretrained(path)
    ids = ids_of(ours.config.vocab_size, batch=1, length=6)
    options = dict(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        expected = reference.generate(ids, **options)
    tokens = generate(ours, ids, max_new_tokens=20, eos_token_id=None)
    assert torch.equal(tokens, expected)
    assert len(set(tokens[0, 6:].tolist())) > 2


@pytest.mark.parametrize("name", ["llama-f32", "llama-k-quants", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"])
def test_token_ids_match_transformers_tokenizer(files, name):
    path, _, _ = files(name)
    ours = trilogy.from_pretrained(path).tokenizer
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in STRINGS:
        assert ours.encode(text).ids == theirs(text).input_ids, text
        plain = ours.encode(text, add_special_tokens=False).ids
        assert plain == theirs(text, add_special_tokens=False).input_ids, text
        assert ours.decode(plain, skip_special_tokens=False) == theirs.decode(plain), text
        assert ours.decode(plain) == theirs.decode(plain, skip_special_tokens=True), text
    # transformers adds GPT-2's "<|endoftext|>" to a byte-level vocabulary without one; the rest is the file's
    assert all(ours.id_to_token(i) == theirs.convert_ids_to_tokens(i) for i in range(ours.get_vocab_size()))


def test_sentencepiece_merges_from_scores_are_transformers():
    """The merges a vocabulary without any implies: every one, in transformers' order (ties included)."""
    from transformers.tokenization_utils_base import generate_merges

    from trilogy.convert.gguf_tokenizer import merges_from_scores

    vocab = sentencepiece_vocab()
    tokens = vocab["tokenizer.ggml.tokens"]
    ids, scores = {t: i for i, t in enumerate(tokens)}, dict(zip(tokens, vocab["tokenizer.ggml.scores"], strict=True))
    expected = generate_merges(ids, scores)
    assert len(expected) > 150 and merges_from_scores(ids, scores) == expected


@pytest.mark.parametrize("name", ["llama-f32", "qwen2", "gemma3"])
def test_chat_template_renders_as_transformers(files, name):
    path, _, _ = files(name)
    ours = trilogy.from_pretrained(path)
    theirs = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = ours.chat_prompt(MESSAGES)
    assert text == theirs.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert ours.tokenizer.encode(text, add_special_tokens=False).ids == theirs(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize("name", ["llama-quantised", "gemma2", "phi3"])
def test_bf16_loads_each_weight_cast(files, name, tmp_path):
    """Each weight is transformers' float32 one cast (Gemma's norms too, 1 taken off before the cast; Phi-3's
    gate and up split and joined again)."""
    path, _, reference = files(name)
    ours = trilogy.from_pretrained(path, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    ours.save_pretrained(tmp_path)
    saved, expected = load_file(tmp_path / "model.safetensors"), reference.state_dict()
    assert saved.keys() <= expected.keys() and len(saved) >= len(expected) - 1  # less a tied head
    assert all(torch.equal(value, expected[key].to(torch.bfloat16)) for key, value in saved.items())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_puts_each_weight_there(files):
    """Rows are copied straight onto the device, bitwise what a CPU load gives."""
    path, _, _ = files("llama-k-quants")
    on_device = trilogy.from_pretrained(path, dtype=torch.bfloat16, device="cuda")
    assert {t.device.type for t in [*on_device.parameters(), *on_device.buffers()]} == {"cuda"}
    on_cpu = trilogy.from_pretrained(path, dtype=torch.bfloat16)
    for (name, ours), theirs in zip(on_device.state_dict().items(), on_cpu.state_dict().values(), strict=True):
        assert torch.equal(ours.cpu(), theirs), name


def test_dtype_auto_is_the_first_tensors(files):
    path, _, _ = files("mistral")  # its token_embd is F16
    assert trilogy.from_pretrained(path, dtype="auto").embeddings.tokens.weight.dtype == torch.float16


def test_the_cli_generates_from_a_gguf_file(files, capsys):
    from trilogy.cli import main

    path, _, _ = files("qwen2")
    assert main(["generate", str(path), "--chat", "where is the cat?", "--max-new-tokens", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt"].endswith("<|im_start|>assistant\n")


# --- what is refused -------------------------------------------------------------------------------------
def small_file(path: Path, arch: str = "llama", metadata: dict | None = None, tensors: dict | None = None,
               vocab: dict | None = None) -> Path:
    """A one-layer Llama-shaped file of F32 zeros, changed by the arguments."""
    model = _llama(16, num_hidden_layers=1)
    written = gguf_tensors(model, lambda name, values: Q.F32) | (tensors or {})
    vocab = vocab if vocab is not None else {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.merges": ["a b"],
                                             "tokenizer.ggml.tokens": [*"abcdefghijklmno", "ab"]}
    fields = {**decoder_metadata(arch, model.config), **vocab, **(metadata or {})}
    return write_gguf(path, arch, fields, written)


def refused(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as error:
        trilogy.from_pretrained(path)
    assert "\n" not in str(error.value), str(error.value)
    return str(error.value)


def test_an_unsupported_architecture_is_refused_before_any_allocation(tmp_path, monkeypatch):
    huge = {"falcon.embedding_length": 2**20, "falcon.block_count": 10**5, "falcon.vocab_size": 10**6}
    path = small_file(tmp_path / "falcon.gguf", "falcon", huge)
    monkeypatch.setattr("trilogy.convert.checkpoint.build_on_meta", None)  # never reached
    assert "'falcon'" in refused(path, "architecture 'falcon' is not supported; supported: llama, qwen2, qwen3")


def test_an_unsupported_quantisation_type_is_refused_by_name(tmp_path):
    if dequantizable(Q.Q8_1):
        pytest.skip("the installed gguf package dequantises Q8_1")
    values, size = GGML_QUANT_SIZES[Q.Q8_1]
    blocks = np.zeros((96, 64 // values * size), dtype=np.uint8)  # (rows, row bytes)
    path = small_file(tmp_path / "q.gguf", tensors={"blk.0.ffn_up.weight": (blocks, Q.Q8_1)})
    refused(path, r"quantisation type Q8_1 \(1 tensors, e.g. blk.0.ffn_up.weight\) cannot be dequantised")


@pytest.mark.parametrize("vocab, match", [
    ({"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": list("abcdefghijklmnop")},
     "tokenizer model 't5' .* not supported; supported: gpt2, llama"),
    ({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "chatglm-bpe", "tokenizer.ggml.tokens": list("abcd"),
      "tokenizer.ggml.merges": []}, "pre-tokenizer 'chatglm-bpe' .* not supported"),
    ({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": list("abcd")}, "needs tokenizer.ggml.scores"),
], ids=["unigram", "unknown-pre", "no-scores"])
def test_a_tokenizer_trilogy_does_not_rebuild_is_refused(tmp_path, vocab, match):
    refused(small_file(tmp_path / "t.gguf", vocab=vocab), match)


@pytest.mark.parametrize("metadata, match", [
    ({"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0}, "rope_type 'linear' is not supported"),
    ({"llama.rope.dimension_count": 8}, "partial_rotary_factor != 1 is not supported"),
    ({"llama.expert_count": 4}, "mixture of experts"),
    ({"llama.attention.key_length": 16, "llama.attention.value_length": 8}, "value_length 8 differs"),
], ids=["rope-scaling", "partial-rotary", "experts", "value-length"])
def test_metadata_trilogy_does_not_reproduce_is_refused(tmp_path, metadata, match):
    refused(small_file(tmp_path / "m.gguf", metadata=metadata), match)


def test_plain_rope_scaling_none_loads(tmp_path):
    trilogy.from_pretrained(small_file(tmp_path / "m.gguf", metadata={"llama.rope.scaling.type": "none"}))


def test_metadata_that_disagrees_with_the_tensors_names_them(tmp_path):
    path = small_file(tmp_path / "m.gguf", metadata={"llama.feed_forward_length": 80})
    with pytest.raises(CheckpointError, match="does not match its GGUF metadata; nothing was loaded") as error:
        trilogy.from_pretrained(path)
    assert "model.layers.0.mlp.up_proj.weight  has shape [96, 64], expected [80, 64]" in str(error.value)


@pytest.mark.parametrize("tensor, match", [("rope_freqs.weight", "Llama 3's RoPE scaling"),
                                           ("rope_factors_long.weight", "Phi-3's long-context RoPE scaling")])
def test_rope_scaling_stored_as_tensors_is_refused(tmp_path, tensor, match):
    """Llama 3.1 and later, and Phi-3's 128k models: llama.cpp stores the scaled RoPE frequencies as tensors."""
    path = small_file(tmp_path / "r.gguf", tensors={tensor: (np.ones(8, np.float32), Q.F32)})
    refused(path, f"{tensor}: {match}")


@pytest.mark.parametrize("arch, layers, width, heads, head_dim, scalar", [
    ("gemma2", 42, 3584, 16, 256, 256), ("gemma2", 46, 4608, 32, 128, 144),  # Gemma 2 9B, 27B
    ("gemma3", 34, 2560, 8, 256, 256), ("gemma3", 62, 5376, 32, 128, 168),  # Gemma 3 4B, 27B
])
def test_gemma_query_scale_is_llama_cpps(arch, layers, width, heads, head_dim, scalar):
    """The file stores no query scale: llama.cpp's rule gives each released model's query_pre_attn_scalar."""
    from trilogy.convert.gguf_checkpoint import ARCHITECTURES, config_json

    metadata = {"general.architecture": arch, f"{arch}.block_count": layers, f"{arch}.embedding_length": width,
                f"{arch}.attention.head_count": heads, f"{arch}.attention.key_length": head_dim}
    assert config_json(metadata, ARCHITECTURES[arch], set())["query_pre_attn_scalar"] == scalar


def test_files_that_are_not_gguf(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no GGUF file at"):
        trilogy.from_pretrained(tmp_path / "absent.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    refused(tmp_path / "junk.gguf", "cannot be read as a GGUF file")
    monkeypatch.setitem(sys.modules, "gguf", None)  # not installed
    refused(small_file(tmp_path / "ok.gguf"), r"needs the gguf package: pip install gguf")


def test_a_load_costs_about_the_file(tmp_path):
    """A fresh process that loads an 88 MB F32 file grows by about the file, not twice it: the file is never
    mapped or read whole, and each tensor is copied in a few rows at a time (measured: the file + 20 to 33 MB, the
    second in a fresh CI environment, where a safetensors load of the same weights grows by the file + 12 MB)."""
    torch.manual_seed(0)
    model = _llama(4000, hidden_size=512, intermediate_size=1536, num_hidden_layers=6)
    vocab = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab", *(f"t{i}" for i in range(3997))],
             "tokenizer.ggml.merges": ["a b"]}
    path = write_gguf(tmp_path / "big.gguf", "llama", {**decoder_metadata("llama", model.config), **vocab},
                      gguf_tensors(model, lambda name, values: Q.F32))
    file_mb = path.stat().st_size / 2**20
    script = f"""
import json, trilogy
from pathlib import Path
def memory(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) / 1024
import gguf, tokenizers  # imported before measuring, as trilogy's own imports are
before = memory("VmRSS")
model = trilogy.from_pretrained({str(path)!r})
print(json.dumps(memory("VmHWM") - before))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(trilogy.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grown_mb = json.loads(result.stdout)
    assert file_mb > 60 and grown_mb < 1.5 * file_mb, (grown_mb, file_mb)  # reading it whole would cost 2x
