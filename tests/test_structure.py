"""The structure spec: the config says which stacks a family has and what sits on them; the built model, the
sizing, the cache and the copies of a model follow it."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from tokenizers import Tokenizer, models

import trilogy
from trilogy.chat import ChatTemplate
from trilogy.config import HEADS, ModelConfig
from trilogy.models import Tokenization, build_model
from trilogy.sizing import kv_cache_bytes, parameter_breakdown, stacks

PRESETS = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]


def every_head():
    for preset in PRESETS:
        arch = ModelConfig.from_preset(preset).arch
        for head in HEADS[arch]:
            for pooler in (False, True):
                yield preset, head, pooler


@pytest.mark.parametrize("preset, head, pooler", list(every_head()))
def test_the_model_builds_what_its_structure_lists(preset, head, pooler):
    config = ModelConfig.from_preset(preset, head=head, pooler=pooler)
    structure = config.structure
    model = build_model(config)
    built = model.stacks()
    assert list(built) == [spec.name for spec in structure.stacks]
    for spec in structure.stacks:
        stack = built[spec.name]
        assert stack is model.get_submodule(spec.module)
        assert len(stack.layers) == spec.n_layers
        assert stack.causal == spec.causal
        assert all((layer.cross_attn is not None) == spec.cross_attention for layer in stack.layers)
    assert (model.pooler is not None) == structure.pooler
    assert (model.sentence_head is not None) == structure.next_sentence
    assert (model.output_head() is not None) == (structure.vocabulary is not None) == config.has_lm_head
    # every parameter outside the stacks is a part the structure names, and the sizing counts each stack
    named = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert named <= {"embeddings", "pooler", "lm_head", "head", "sentence_head"} | {s.module for s in structure.stacks}
    for spec in structure.stacks:
        measured = sum(p.numel() for n, p in model.named_parameters() if n.startswith(spec.module + "."))
        counted = sum(v for k, v in parameter_breakdown(config).items() if k.startswith(spec.name + "/"))
        assert measured == counted


def test_the_pooler_rule_is_the_structure_s():
    """BERT checkpoints carry a pooler whatever their head; only an encoder reads its first token, and the
    sequence classifier and next-sentence head read the pooler."""
    bert = ModelConfig.from_preset("tiny-bert")
    assert bert.replace(head="sequence-classification", pooler=False).structure.pooler
    assert bert.replace(head="pretraining", pooler=False).structure.pooler
    assert not bert.replace(head="token-classification", pooler=False).structure.pooler
    assert bert.replace(head="mlm", pooler=True).structure.pooler
    assert not ModelConfig.from_preset("tiny-gpt2", pooler=True).structure.pooler
    assert not ModelConfig.from_preset("tiny-t5", pooler=True).structure.pooler


@pytest.mark.parametrize("preset, source", [("tiny-gpt2", None), ("tiny-t5", 7)])
def test_the_cache_follows_the_output_stack(preset, source):
    """The cache ``new_cache`` makes has a layer per layer of the output stack, and holds the bytes the sizing
    says after decoding."""
    torch.manual_seed(0)
    model = trilogy.build(preset, n_layers=3, **({"n_decoder_layers": 2} if source else {})).eval()
    prompt = torch.randint(3, 1000, (2, source or 5))
    inputs, _ = model.start(prompt, max_new_tokens=4)
    cache = model.new_cache(2, 16)
    assert len(cache.layers) == model.structure.output.n_layers
    with torch.no_grad():
        _, cache = model.step(inputs, cache)
    held = sum(t.numel() * t.element_size() for layer in cache.layers for kv in (layer.self_kv, layer.cross_kv)
               if kv is not None for t in (kv.keys, kv.values))
    expected = kv_cache_bytes(model.config, 2, inputs.tokens.size(1), source, 4)
    assert held == expected["self"] + expected["cross"]


def test_sizing_reads_the_stacks_of_the_structure():
    t5 = ModelConfig.from_preset("tiny-t5", n_layers=3, n_decoder_layers=2)
    [encoder, decoder] = stacks(t5, seq=5, src=9)
    assert (encoder.name, encoder.n_layers, encoder.query_len, encoder.cross_len) == ("encoder", 3, 9, 0)
    assert (decoder.name, decoder.n_layers, decoder.query_len, decoder.cross_len) == ("decoder", 2, 5, 9)
    [only] = stacks(ModelConfig.from_preset("tiny-bert"), seq=5)
    assert (only.name, only.query_len, only.key_len) == ("encoder", 5, 5)


def test_an_encoder_refuses_to_decode():
    bert = trilogy.build("tiny-bert")
    with pytest.raises(TypeError, match="encoder-only model predicts masked tokens"):
        bert.new_cache(1, 4)
    with pytest.raises(TypeError, match="encoder-only model predicts masked tokens"):
        bert.generate(torch.tensor([[5, 6]]), max_new_tokens=2)


def tokenization() -> Tokenization:
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
    return Tokenization(tokenizer, ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}"))


def test_the_tokenization_travels_with_every_copy(tmp_path):
    """Given when a model is built; saved beside the weights and read back; kept by ``copy.deepcopy``; and by
    the unsharded copy a sharded run saves."""
    from trilogy.train.fsdp import shard, unsharded_copy

    model = trilogy.build("tiny-gpt2", tokenization=tokenization())
    loaded = trilogy.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert loaded.tokenizer.encode("hi").ids == [1]
    assert loaded.chat_prompt([{"role": "user", "content": "hi"}]) == "hi"
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        sharded = shard(trilogy.build("tiny-gpt2", tokenization=tokenization()))
        copy = unsharded_copy(sharded)
    finally:
        dist.destroy_process_group()
    assert copy.tokenization == sharded.tokenization
    assert copy.chat_prompt([{"role": "user", "content": "hi"}]) == "hi"
    assert copy.tokenizer is not None


def test_activation_checkpointing_is_given_at_build():
    plain = trilogy.build("tiny-llama")
    recomputing = trilogy.build("tiny-llama", checkpoint_activations=True)
    assert not any(stack.checkpoint_activations for stack in plain.stacks().values())
    assert all(stack.checkpoint_activations for stack in recomputing.stacks().values())
