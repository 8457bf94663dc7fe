"""BART, Marian and mT5 checkpoints beyond the parity table (``test_convert_parity.py``): greedy and beam decoding
give transformers' ``generate`` tokens (with its forced BOS/EOS off: trilogy forces neither), bf16 loads, the
block options change the logits (so the parity tests can see them), Marian's sinusoids are transformers' bitwise,
``trilogy size`` counts them, saved folders read back bitwise, and the configs trilogy does not reproduce are
one-line CheckpointErrors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MT5Config,
    MT5ForConditionalGeneration,
)
from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

import trilogy
from trilogy import CheckpointError
from trilogy.blocks.position import PositionalEncoding
from trilogy.cli import main
from trilogy.generate import generate
from trilogy.sizing import count_parameters, flops_breakdown

from .convert_helpers import load_bf16_checked, max_diff, perturb
from .test_convert_parity import CASES, hf_model, make_inputs
from .test_generate import PAD

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 97
SIZES = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
             pad_token_id=PAD)
REFERENCES = {
    "bart": lambda: BartForConditionalGeneration(BartConfig(**SIZES)),
    "marian": lambda: MarianMTModel(MarianConfig(**SIZES, activation_function="swish", scale_embedding=True,
                                                 decoder_start_token_id=PAD, eos_token_id=0)),
    "mt5": lambda: MT5ForConditionalGeneration(MT5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48,
                                                         num_layers=2, num_heads=4)),
}
#: (std of the weights, of the token table): weights whose greedy tokens change from step to step. A tied head
#: reading a post-norm stack (BART's, Marian's) copies the token it reads, its output being close to that token's
#: embedding: small token embeddings, and BART's learned positions N(0, 1), let the position move the output.
SPREAD = {"bart": (0.1, 0.1), "marian": (0.1, 0.02), "mt5": (0.5, 0.5)}
#: transformers' generate forces EOS as the last token where the config names a forced_eos_token_id (BART's and
#: Marian's do) and BOS as the first where it names a forced_bos_token_id (bart-large-cnn's); trilogy does neither
FORCED_OFF = dict(forced_eos_token_id=None, forced_bos_token_id=None)


def varied(reference: torch.nn.Module, std: float, token_std: float) -> torch.nn.Module:
    """Every weight but the norms N(0, ``std``), the token table N(0, ``token_std``), BART's position tables
    N(0, 1), a final_logits_bias N(0, 0.1); Marian's sinusoidal tables as transformers computes them (they are
    frozen parameters there, which its files leave out)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            scale = token_std if param is reference.get_input_embeddings().weight else \
                1.0 if "embed_positions" in name else std
            if "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
        if hasattr(reference, "final_logits_bias"):
            reference.final_logits_bias.normal_(std=0.1, generator=generator)
        for module in reference.modules():
            if isinstance(module, MarianSinusoidalPositionalEmbedding):
                module.weight.copy_(module.create_weight())
    return reference.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (the transformers model, its folder)."""
    result = {}
    for name, make in REFERENCES.items():
        torch.manual_seed(0)
        reference = varied(make(), *SPREAD[name])
        folder = tmp_path_factory.mktemp(name)
        reference.save_pretrained(folder)
        result[name] = (reference, folder)
    return result


def sources(name: str, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 9 tokens, the rows 9, 6 and 3 real ones, right-padded with the model's pad id."""
    ids = torch.randint(4, VOCAB, (batch, 9), generator=torch.Generator().manual_seed(batch))
    mask = torch.ones_like(ids)
    for row, length in enumerate([9, 6, 3][:batch]):
        mask[row, length:] = 0
    return ids.masked_fill(mask == 0, 0 if name == "mt5" else PAD), mask


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beams"])
@pytest.mark.parametrize("batch", [1, 3], ids=["batch1", "padded-batch"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_tokens_identical_to_transformers_generate(saved, name, batch, num_beams):
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    ids, mask = sources(name, batch)
    options = dict(max_new_tokens=20, num_beams=num_beams, eos_token_id=None)
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, **options, **FORCED_OFF)
    tokens = generate(ours, ids, mask, **options)
    assert torch.equal(tokens, expected)
    assert len(set(tokens[:, 1:].flatten().tolist())) > 3  # the comparison is not between constant outputs


@pytest.mark.parametrize("name", list(REFERENCES))
def test_rows_stop_at_eos_as_in_transformers(saved, name):
    """An EOS id the first row produces early: that row stops and is padded, the others go on."""
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    ids, mask = sources(name, 3)
    free = generate(ours, ids, mask, max_new_tokens=20, eos_token_id=None)
    eos = int(free[0, 4])
    with torch.no_grad():
        expected = reference.generate(ids, attention_mask=mask, max_new_tokens=20, eos_token_id=eos, **FORCED_OFF)
    tokens = ours.generate(ids, mask, max_new_tokens=20, eos_token_id=eos)
    assert torch.equal(tokens, expected)
    assert (tokens[0] == eos).any()


@pytest.mark.parametrize("name", ["bart", "marian"])
def test_transformers_forced_eos_changes_only_the_last_token(saved, name):
    """With BART's and Marian's own generation config, transformers writes EOS as the last token; every other
    token is trilogy's."""
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    ids, mask = sources(name, 3)
    forced = reference.generation_config.forced_eos_token_id
    assert forced == ours.config.eos_token_id
    with torch.no_grad():
        theirs = reference.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=None)
    tokens = generate(ours, ids, mask, max_new_tokens=12, eos_token_id=None)
    assert torch.equal(tokens[:, :-1], theirs[:, :-1])
    assert (theirs[:, -1] == forced).all() and not (tokens[:, -1] == forced).all()


@pytest.mark.parametrize("case", ["BartForConditionalGeneration", "MarianMTModel", "MT5ForConditionalGeneration-untied"])
def test_bf16_loads(tmp_path, case):
    """Each weight is the file's, cast to bf16; the logits stay as near the fp32 ones as transformers' bf16."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    ours = load_bf16_checked(tmp_path)
    theirs = type(reference).from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    inputs = make_inputs(ours.config)
    with torch.no_grad():
        logits = ours.run(inputs["input_ids"], inputs["decoder_input_ids"], inputs["attention_mask"],
                          inputs["decoder_attention_mask"]).logits
        their_logits, expected = theirs(**inputs).logits, reference(**inputs).logits
    assert logits.dtype == torch.bfloat16
    target = inputs["decoder_attention_mask"]
    assert max_diff(logits, expected, target) <= 2 * max(max_diff(their_logits, expected, target), 0.02)
    assert max_diff(logits, their_logits, target) <= 0.05 * float(expected.abs().max())


@pytest.mark.parametrize("name,changes", [
    ("bart", dict(position_offset=0, max_seq_len=66)),  # the same table, read from row 0
    ("bart", dict(embeddings_per_stack=False)),  # the decoder through the encoder's positions and norm
    ("bart", dict(head_bias=False)),
    ("marian", dict(sinusoidal_layout="interleaved")),
    ("marian", dict(embedding_scale=1.0)),
])
def test_the_options_change_the_logits(saved, name, changes):
    """The parity tests can see an option ignored or misplaced."""
    reference, folder = saved[name]
    ours = trilogy.from_pretrained(folder)
    wrong = trilogy.build(ours.config.replace(**changes)).eval()
    wrong.load_state_dict(ours.state_dict(), strict=False)  # without the decoder's embeddings or the head's bias
    ids, mask = sources(name, 3)
    target = torch.randint(4, VOCAB, (3, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        assert max_diff(ours(ids, target, attention_mask=mask), theirs) <= 1e-4
        assert max_diff(wrong(ids, target, attention_mask=mask), theirs) > 1e-2


@pytest.mark.parametrize("width", [32, 33])
def test_marian_sinusoids_are_transformers_bitwise(width):
    """Sin of every frequency in the first half, cos in the second (the odd width's extra column a sin); the
    notebook's interleaved table stays as it was."""
    expected = MarianSinusoidalPositionalEmbedding(64, width).create_weight()
    assert torch.equal(PositionalEncoding(width, 64, "halves").pe[0], expected)
    interleaved = PositionalEncoding(width, 64).pe[0]  # the same sines and cosines, side by side
    assert torch.allclose(interleaved[:, 0::2], expected[:, : (width + 1) // 2], atol=1e-4)
    assert torch.allclose(interleaved[:, 1::2], expected[:, (width + 1) // 2:], atol=1e-4)


PARITY_CASES = [case for case in CASES if case.startswith(("Bart", "Marian", "MT5"))]


@pytest.mark.parametrize("case", PARITY_CASES)
def test_parameter_count_matches_transformers(tmp_path, case):
    """``trilogy size``'s count (from the config alone) against the loaded model and transformers' trained
    parameters: its final_logits_bias is a buffer, our head's bias a parameter; Marian's frozen sinusoidal tables
    are parameters there, a computed buffer here."""
    reference = hf_model(case)
    reference.save_pretrained(tmp_path)
    ours = trilogy.from_pretrained(tmp_path)
    theirs = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    theirs += reference.final_logits_bias.numel() if hasattr(reference, "final_logits_bias") else 0
    assert count_parameters(ours.config) == ours.num_parameters() == theirs


@pytest.mark.parametrize("case", ["BartForConditionalGeneration", "MarianMTModel"])
def test_flops_match_flop_counter(tmp_path, case):
    hf_model(case).save_pretrained(tmp_path)
    model = trilogy.from_pretrained(tmp_path).train()
    batch, seq, src = 2, 24, 17
    source, target = torch.randint(4, 99, (batch, src)), torch.randint(4, 99, (batch, seq))
    with FlopCounterMode(display=False) as counter:  # the explicit attention path: plain matmuls
        model.run(source, target, return_attention=True).logits.sum().backward()
    predicted = sum(flops_breakdown(model.config, batch, seq, src).values())
    assert 3 * predicted == pytest.approx(counter.get_total_flops(), rel=0.05)


def test_size_command_counts_each_stacks_positions(tmp_path, capsys):
    reference = hf_model("BartForConditionalGeneration")
    reference.save_pretrained(tmp_path)
    capsys.readouterr()
    assert main(["size", str(tmp_path), "--seq", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params_breakdown"]["embeddings/positions"] == 2 * (2 + 64) * 32  # two tables of offset + 64
    assert report["params_breakdown"]["embeddings/norm"] == 2 * 2 * 32
    assert report["params_breakdown"]["head/lm"] == 99  # tied, with its bias
    assert report["params"] == count_parameters(trilogy.from_pretrained(tmp_path).config)


@pytest.mark.parametrize("case,model_type", [("BartForConditionalGeneration", "bart"), ("MarianMTModel", "marian"),
                                             ("MarianModel", "marian"), ("MT5ForConditionalGeneration-untied", "mt5")])
def test_saved_folders_read_back_bitwise(tmp_path, case, model_type):
    """Marian's folders hold the sinusoidal tables (transformers' MarianModel expects them), skipped when read;
    an mT5 is written as mT5, without T5's scale_decoder_outputs."""
    hf_model(case).save_pretrained(tmp_path / "hf")
    ours = trilogy.from_pretrained(tmp_path / "hf")
    perturb(ours, seed=4)
    ours.save_pretrained(tmp_path / "ours", format="hf")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["model_type"] == model_type
    assert "scale_decoder_outputs" not in written or model_type != "mt5"
    if model_type == "marian":
        table = load_file(tmp_path / "ours" / "model.safetensors")[
            ("model." if case == "MarianMTModel" else "") + "decoder.embed_positions.weight"]
        assert torch.equal(table, MarianSinusoidalPositionalEmbedding(64, 32).create_weight())
    back = trilogy.from_pretrained(tmp_path / "ours")
    assert back.config == ours.config
    for (name, a), b in zip(back.state_dict().items(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def edited(case: str, tmp_path, **changes):
    """The folder of ``case``'s tiny transformers model, with ``changes`` written into its config.json."""
    hf_model(case).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))
    return tmp_path


@pytest.mark.parametrize("case,changes,message", [
    ("MarianMTModel", dict(normalize_before=True), "normalize_before=True is not supported"),
    ("MarianMTModel", dict(static_position_embeddings=False), "static_position_embeddings=False is not supported"),
    ("MarianMTModel", dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=50),
     "separate encoder and decoder vocabularies"),
    ("BartForConditionalGeneration", dict(add_final_layer_norm=True), "add_final_layer_norm=True is not supported"),
    ("BartForConditionalGeneration", dict(decoder_attention_heads=2),
     "encoder_attention_heads=4 and decoder_attention_heads=2 differ"),
    ("BartModel", dict(decoder_ffn_dim=40), "encoder_ffn_dim=37 and decoder_ffn_dim=40 differ"),
    ("BartModel", dict(activation_function="quick_gelu"), "activation_function='quick_gelu' is not supported"),
    ("MT5Model", dict(feed_forward_proj="gated-gelu-x"), "is not of the form"),
])
def test_unsupported_options_are_one_line_errors(tmp_path, case, changes, message):
    with pytest.raises(CheckpointError, match=message) as error:
        trilogy.from_pretrained(edited(case, tmp_path, **changes))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("case,changes,tensor", [
    ("BartForConditionalGeneration", dict(max_position_embeddings=80), "model.encoder.embed_positions.weight"),
    ("MarianMTModel", dict(vocab_size=120, decoder_vocab_size=120), "final_logits_bias"),
    ("MT5EncoderModel", dict(d_kv=4), "encoder.block.0.layer.0.SelfAttention.q.weight"),
])
def test_config_that_disagrees_with_its_weights_is_refused(tmp_path, case, changes, tensor):
    with pytest.raises(CheckpointError, match="does not match its config.json") as error:
        trilogy.from_pretrained(edited(case, tmp_path, **changes))
    assert tensor in str(error.value)
    assert "\n" not in str(error.value).split(". ")[0]
