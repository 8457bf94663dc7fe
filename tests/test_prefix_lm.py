"""The prefix LM of the T5 paper (Raffel et al. 2020, §3.2.1), a decoder by config: its mask against matrices
written by hand; with no prefix it is the plain decoder, with a prefix its first tokens read each other both
ways and nothing reads ahead of the prefix; decoding reads the prompt as the prefix, with the cache giving the
tokens of full recomputation; the ``prefix-lm`` objective, its FLOPs, ``trilogy train``, the mask pictures and
the round trip through trilogy's own checkpoint format."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

import trilogy
from trilogy.blocks.masks import prefix_lm_mask
from trilogy.cli import main
from trilogy.config import ModelConfig
from trilogy.convert import CheckpointError
from trilogy.data import train_tokenizer
from trilogy.errors import TrilogyError
from trilogy.generate import generate
from trilogy.models import build_model
from trilogy.objectives import IGNORE, Batches, compute_loss, get_objective
from trilogy.sizing import batch_rows, kv_cache_bytes, training_flops
from trilogy.viz.mask_panels import family_masks, model_masks

from .test_data import sample_documents
from .train_helpers import train_args, write_text

PRESETS = ["tiny-prefix-lm", "tiny-llama"]  # learned positions; rotary (with grouped-query attention)


pytestmark = pytest.mark.usefixtures("one_thread")


def prefix_lm(preset: str, seed: int = 0, **changes) -> trilogy.DecoderOnlyTransformer:
    """A prefix LM of ``preset``'s shape without dropout, with weights spread enough that a tiny model's
    next-token choice changes from step to step."""
    model = build_model(ModelConfig.from_preset(preset, prefix_lm=True, dropout=0.0, **changes))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model.eval()


def plain_twin(model):
    """The causal decoder with ``model``'s weights."""
    twin = build_model(model.config.replace(prefix_lm=False)).eval()
    twin.load_state_dict(model.state_dict())
    return twin


def ids_of(shape, seed=1):
    return torch.randint(4, 1000, shape, generator=torch.Generator().manual_seed(seed))


# --- the config ------------------------------------------------------------------------------------------------


def test_the_config_says_prefix_and_round_trips_through_json():
    config = ModelConfig.from_preset("tiny-prefix-lm")
    (stack,) = config.structure.stacks
    assert (stack.attention, stack.causal, stack.prefix) == ("prefix", True, True)
    assert config.structure.generates and kv_cache_bytes(config, 1, 8, None, 4)["self"] > 0  # it decodes with a cache
    assert not ModelConfig.from_preset("tiny-gpt2").structure.output.prefix
    assert ModelConfig.from_json(config.to_json()) == config and json.loads(config.to_json())["prefix_lm"] is True
    model = build_model(config)
    assert model.stack.spec.prefix and model.num_parameters() == build_model(config.replace(prefix_lm=False)
                                                                             ).num_parameters()


@pytest.mark.parametrize("preset", ["tiny-bert", "tiny-t5"])
def test_only_a_decoder_can_be_a_prefix_lm(preset):
    with pytest.raises(TrilogyError, match="arch .* cannot be one") as error:
        ModelConfig.from_preset(preset, prefix_lm=True)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("build, prefix, message", [
    ("tiny-gpt2", torch.tensor([1]), "prefix_length is for a prefix LM"),
    ("tiny-prefix-lm", torch.tensor([1, 2]), r"shape \(2,\), expected \(1,\)"),
    ("tiny-prefix-lm", torch.tensor([[1]]), r"shape \(1, 1\)"),
    ("tiny-prefix-lm", torch.tensor([1.0]), "integer token counts"),
    ("tiny-prefix-lm", torch.tensor([7]), r"holds 7, outside \[0, 6\]"),
    ("tiny-prefix-lm", torch.tensor([-1]), "holds -1"),
    ("tiny-prefix-lm", [1], "must be a torch.Tensor"),
])
def test_a_bad_prefix_length_is_one_line_with_the_value_named(build, prefix, message):
    with pytest.raises((TrilogyError, TypeError), match=message) as error:
        trilogy.build(build).run(ids_of((1, 6)), prefix_length=prefix)
    assert "\n" not in str(error.value)


# --- the mask ----------------------------------------------------------------------------------------------------


def matrix(rows: str) -> torch.Tensor:
    """A (T, S) bool matrix from rows of '#' (may attend) and '.'."""
    return torch.tensor([[c == "#" for c in row] for row in rows.split()])


def test_the_mask_is_the_hand_written_one():
    expected = matrix("""
        ###...
        ###...
        ###...
        ####..
        #####.
        ######""")
    assert torch.equal(prefix_lm_mask(None, torch.tensor([3]), 6, 6)[0, 0], expected)
    two_rows = prefix_lm_mask(None, torch.tensor([0, 6]), 6, 6)  # (2, 1, 6, 6)
    assert torch.equal(two_rows[0, 0], torch.ones(6, 6).tril().bool())
    assert torch.equal(two_rows[1, 0], torch.ones(6, 6, dtype=torch.bool))
    # the last two queries of the same row, its first four keys cached
    assert torch.equal(prefix_lm_mask(None, torch.tensor([3]), 2, 6)[0, 0], expected[4:])


def test_the_mask_with_padding_counts_real_tokens():
    # row 0: two pads on the left, prefix of 2 real tokens; row 1: one pad on the right, prefix of 3
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    got = prefix_lm_mask(attention_mask, torch.tensor([2, 3]), 6, 6)[:, 0]
    left = matrix("""
        ..##..
        ..##..
        ..##..
        ..##..
        ..###.
        ..####""")  # padded queries see the prefix: their outputs are not read
    right = matrix("""
        ###...
        ###...
        ###...
        ####..
        #####.
        #####.""")
    assert torch.equal(got[0], left) and torch.equal(got[1], right)
    # a prefix of 0 with padding: the causal decoder's mask, padded queries that see nothing opened fully
    causal = prefix_lm_mask(attention_mask, torch.tensor([0, 0]), 6, 6)[:, 0]
    assert torch.equal(causal[0], matrix("###### ###### ..#... ..##.. ..###. ..####"))


# --- the model -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("explicit", [False, True])
def test_a_prefix_of_zero_is_the_plain_decoder_exactly(preset, explicit):
    model = prefix_lm(preset)
    plain = plain_twin(model)
    ids = ids_of((2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        for attention_mask in (None, mask):
            ours = model.run(ids, attention_mask, prefix_length=torch.zeros(2, dtype=torch.long),
                             return_attention=explicit)
            theirs = plain.run(ids, attention_mask, return_attention=explicit)
            assert torch.equal(ours.logits, theirs.logits)
            without = model.run(ids, attention_mask, return_attention=explicit)  # None is 0
            assert torch.equal(without.logits, theirs.logits)


@pytest.mark.parametrize("preset", PRESETS)
def test_the_prefix_is_read_both_ways_and_nothing_reads_ahead_of_it(preset):
    """Changing a prefix token changes every prefix position's output, earlier ones included; changing a
    continuation token changes nothing before it. A whole-row prefix reads everything: each position's weights
    cover every real token."""
    model = prefix_lm(preset)
    ids = ids_of((1, 10))
    prefix = torch.tensor([5])

    def logits(tokens):
        with torch.no_grad():
            return model.run(tokens, prefix_length=prefix).logits[0]  # (T, V)

    base = logits(ids)
    for position in range(10):
        changed = ids.clone()
        changed[0, position] = (changed[0, position] + 7) % 1000
        moved = ~torch.isclose(logits(changed), base, atol=1e-6).all(-1)  # (T,) the positions whose output moved
        if position < 5:
            assert moved.all()
        else:
            assert not moved[:position].any() and moved[position:].all()
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        out = model.run(ids, mask, prefix_length=torch.tensor([8]), return_attention=True)
    for weights in out.attentions["decoder"]:  # (1, H, T, S)
        assert (weights[0, :, 2:, 2:] > 0).all() and (weights[0, :, 2:, :2] == 0).all()


def uncached_greedy(model, input_ids, attention_mask, new_tokens):
    """Greedy decoding that re-runs the whole sequence for every token, the prompt as the prefix."""
    prompt = attention_mask.sum(-1) if attention_mask is not None else torch.full((len(input_ids),),
                                                                                   input_ids.size(1))
    out, mask = input_ids, attention_mask
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model.run(out, mask, prefix_length=prompt).logits
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1) if mask is not None else None
    return out


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("padded", [False, True])
def test_cached_decoding_gives_the_tokens_of_full_recomputation(preset, padded):
    model = prefix_lm(preset)
    ids = ids_of((3, 9))
    mask = None
    if padded:
        mask = torch.ones_like(ids)
        mask[1, :4] = 0  # left padding
        mask[2, :2] = 0
    new = 12
    cached = generate(model, ids, mask, max_new_tokens=new, eos_token_id=None)
    assert torch.equal(cached, uncached_greedy(model, ids, mask, new))
    assert len(set(cached[0, -new:].tolist())) > 3  # the comparison is not between constant outputs
    # the prompt is read both ways: the causal decoder with the same weights continues it differently
    assert not torch.equal(cached, generate(plain_twin(model), ids, mask, max_new_tokens=new, eos_token_id=None))
    beams = generate(model, ids, mask, max_new_tokens=4, num_beams=3, eos_token_id=None)  # rows expanded
    assert beams.shape == (3, 9 + 4) and torch.equal(beams[:, :9], ids)


# --- the objective -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("decoder", sample_documents(), 800)


def batches(tokenizer, objective, seed=0, rows=8, **options):
    return Batches(objective, sample_documents(), tokenizer, 32, rows, seed=seed, **options)


def test_the_objective_splits_each_row_of_the_causal_lm_s_batches(tokenizer):
    task = get_objective("prefix-lm")
    assert (task.arch, task.head, task.prefix_lm, get_objective("clm").prefix_lm) == ("decoder", "lm", True, False)
    ours = list(itertools.islice(batches(tokenizer, "prefix-lm", seed=4, epochs=1, shuffle=False), 6))
    theirs = list(itertools.islice(batches(tokenizer, "clm", seed=4, epochs=1, shuffle=False), 6))
    drawn = []
    for batch, clm in zip(ours, theirs, strict=True):
        assert set(batch) == {"input_ids", "attention_mask", "labels", "prefix_length", "loss_normalizer"}
        assert torch.equal(batch["input_ids"], clm["input_ids"])
        assert torch.equal(batch["attention_mask"], clm["attention_mask"])
        lengths, prefix = batch["attention_mask"].sum(-1), batch["prefix_length"]
        assert prefix.shape == (8,) and ((1 <= prefix) & (prefix <= lengths)).all()
        for row, p in enumerate(prefix.tolist()):
            # position p - 1 predicts the first continuation token: the loss counts the continuation only
            assert (batch["labels"][row, :p - 1] == IGNORE).all()
            assert torch.equal(batch["labels"][row, p - 1:], clm["labels"][row, p - 1:])
        assert batch["loss_normalizer"] == (batch["labels"] != IGNORE).sum()
        drawn += prefix.tolist()
    assert len(set(drawn)) > 20 and min(drawn) < 8 and max(drawn) > 24  # spread over the rows' lengths
    again = next(batches(tokenizer, "prefix-lm", seed=4, epochs=1, shuffle=False))
    assert torch.equal(again["prefix_length"], ours[0]["prefix_length"])  # seeded
    other = next(batches(tokenizer, "prefix-lm", seed=5, epochs=1, shuffle=False))
    assert not torch.equal(other["prefix_length"], ours[0]["prefix_length"])
    shards = [next(batches(tokenizer, "prefix-lm", seed=4, epochs=1, shuffle=False, rank=r, world_size=2))
              for r in range(2)]
    assert torch.equal(torch.cat([s["prefix_length"] for s in shards]), ours[0]["prefix_length"])


def test_the_loss_counts_the_continuation_with_the_prefix_read_both_ways(tokenizer):
    batch = next(batches(tokenizer, "prefix-lm", epochs=1, shuffle=False))
    model = prefix_lm("tiny-prefix-lm", vocab_size=tokenizer.get_vocab_size())
    with torch.no_grad():
        loss, metrics = compute_loss("prefix-lm", model, batch)
        reference = model.run(batch["input_ids"], batch["attention_mask"],
                              prefix_length=batch["prefix_length"]).logits
    assert metrics["targets"] == int((batch["labels"] != IGNORE).sum())
    counted = batch["labels"] != IGNORE
    expected = torch.nn.functional.cross_entropy(reference[counted], batch["labels"][counted], reduction="sum")
    assert_close(loss * batch["loss_normalizer"], expected, rtol=1e-4, atol=1e-3)
    with pytest.raises(TrilogyError, match="prefix_length is for a prefix LM"):
        compute_loss("prefix-lm", plain_twin(model), batch)


def test_training_flops_count_the_continuation_rows_only(tokenizer):
    """A prefix-LM batch's training FLOPs (``sizing``) equal the sum over its rows of what FlopCounterMode counts
    when each row trains alone, unpadded: only the continuation reaches the head."""
    batch = next(batches(tokenizer, "prefix-lm", seed=2, rows=4))
    model = build_model(ModelConfig.from_preset("tiny-prefix-lm", vocab_size=tokenizer.get_vocab_size())).train()
    measured = 0
    for row in range(len(batch["input_ids"])):
        real = batch["attention_mask"][row].bool()
        ids, labels = batch["input_ids"][row, real][None], batch["labels"][row, real][None]
        with FlopCounterMode(display=False) as counter:
            # the explicit attention path is plain matmuls, which FlopCounterMode counts
            model.run(ids, labels=labels, prefix_length=batch["prefix_length"][row:row + 1],
                      return_attention=True).loss.backward()
        measured += counter.get_total_flops()
    rows = batch_rows(batch)
    assert [labelled for _, _, labelled in rows] == (batch["labels"] != IGNORE).sum(-1).tolist()
    assert sum(labelled for _, _, labelled in rows) < batch["attention_mask"].sum()
    assert training_flops(model.config, rows) == pytest.approx(measured, rel=0.05)


@pytest.mark.filterwarnings("ignore:no Hugging Face equivalent")
def test_trilogy_train_trains_a_prefix_lm(tmp_path):
    data, out = write_text(tmp_path / "text.txt"), tmp_path / "run"
    assert main(train_args(out, data, "decoder", objective="prefix-lm", max_steps=4, save_every=0,
                           eval_every=0)) == 0
    model = trilogy.from_pretrained(out)
    assert model.config.prefix_lm and model.structure.output.prefix
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["split"] == "validation" and final["bits_per_char"] > 0 and final["targets"] > 0


# --- pictures and checkpoints --------------------------------------------------------------------------------


def test_the_mask_pictures_are_what_the_prefix_lm_s_attention_receives():
    model = prefix_lm("tiny-prefix-lm")
    panels = model_masks(model, seq=7, pad=2)  # a prefix of 3: half the padded row's 5 real tokens, rounded up
    padded = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    ids = ids_of((1, 7))
    seen = {}
    handle = model.stack.layers[1].self_attn.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(mask=kwargs["mask"], causal=kwargs["is_causal"]), with_kwargs=True)
    for key, mask in (("self", None), ("self+padding", padded)):
        with torch.no_grad():
            out = model.run(ids, mask, prefix_length=torch.tensor([3]), return_attention=True)
        picture = panels[key].allowed
        assert not seen["causal"] and torch.equal(seen["mask"][0, 0], picture)
        assert all(torch.equal(head > 0, picture) for head in out.attentions["decoder"][1][0])
    handle.remove()
    assert torch.equal(panels["self"].allowed, matrix("###.... ###.... ###.... ####... #####.. ######. #######"))
    assert torch.equal(panels["self+padding"].allowed,
                       matrix("###.... ###.... ###.... ####... #####.. #####.. #####.."))


def test_the_family_pictures_have_the_prefix_lm_beside_the_other_three(tmp_path, capsys):
    panels = family_masks(6, 5, 2)
    titles = [p.title for p in panels]
    assert len(panels) == 8 and titles[-2:] == ["prefix LM decoder\nbidirectional prefix (2) + causal rest",
                                                "prefix LM decoder\nbidirectional prefix (2) + causal rest + padding"]
    assert torch.equal(panels[-2].allowed, prefix_lm_mask(None, torch.tensor([2]), 6, 6)[0, 0])
    assert main(["masks", "--model", "tiny-prefix-lm", "--seq", "5", "--pad", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [p["title"] for p in shown] == ["decoder: bidirectional prefix (2) + causal rest",
                                           "decoder: bidirectional prefix (2) + causal rest + padding"]
    assert shown[0]["allowed"] == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
                                   [1, 1, 1, 1, 1]]
    assert main(["masks", "--seq", "6", "--out", str(tmp_path / "masks.png")]) == 0


@pytest.mark.parametrize("preset", PRESETS)
def test_save_and_load_keep_the_prefix_lm(preset, tmp_path):
    model = prefix_lm(preset)
    with pytest.raises(CheckpointError, match="prefix_lm=True"):
        model.save_pretrained(tmp_path / "hf", format="hf")  # no Hugging Face class is a prefix LM
    with pytest.warns(UserWarning, match="trilogy's own format"):
        model.save_pretrained(tmp_path / "model")
    loaded = trilogy.from_pretrained(tmp_path / "model")
    assert loaded.config.prefix_lm and loaded.config == model.config
    ids, prefix = ids_of((2, 8)), torch.tensor([3, 8])
    with torch.no_grad():
        assert torch.equal(loaded.run(ids, prefix_length=prefix).logits, model.run(ids, prefix_length=prefix).logits)
