"""The logit lens: each layer's stream read through the family's own ending, against transformers' hidden states
read through the reference's (GPT-2 and Llama: final norm and unembedding; BERT: the MLM head; T5: the decoder's
final norm, the head's scaling and the head); its picture."""

from __future__ import annotations

import pytest
import torch

import trilogy
from trilogy.errors import TrilogyError
from trilogy.viz.logit_lens import logit_lens

from .hooks_helpers import HF_CASES, load_cases, sample_inputs


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_cases(tmp_path_factory.mktemp)


def _reference_readout(reference, case: str):
    """The reference's ending applied to a stream that has not been through the final norm."""
    if case.startswith("GPT2"):
        return lambda h: reference.lm_head(reference.transformer.ln_f(h))
    if case.startswith("Llama"):
        return lambda h: reference.lm_head(reference.model.norm(h))
    if case.startswith("Bert"):
        return reference.cls
    scale = reference.config.d_model ** -0.5 if reference.config.tie_word_embeddings else 1.0
    return lambda h: reference.lm_head(reference.decoder.final_layer_norm(h) * scale)


@pytest.mark.parametrize("case", HF_CASES)
def test_each_layer_through_the_family_head(loaded, case):
    reference, ours = loaded[case]
    source, target = (ids[:1] for ids in sample_inputs())
    with torch.no_grad():
        if ours.structure.has_source:
            theirs = reference(input_ids=source, decoder_input_ids=target, output_hidden_states=True)
            streams, ids = theirs.decoder_hidden_states, target
            lens = logit_lens(ours, source, 7, decoder_input_ids=target)
        else:
            theirs = reference(input_ids=source, output_hidden_states=True)
            streams, ids = theirs.hidden_states, source
            lens = logit_lens(ours, source, 7)
        readout = _reference_readout(reference, case)
        has_final_norm = not case.startswith("Bert")  # transformers' last hidden state is already normed
        rows = [readout(h) for h in streams[:-1]] + [theirs.logits if has_final_norm else readout(streams[-1])]
    probabilities = torch.stack(rows)[:, 0].softmax(-1)  # (L + 1, T, V)
    torch.testing.assert_close(probabilities[-1], theirs.logits[0].softmax(-1))
    torch.testing.assert_close(lens.target_probabilities, probabilities[..., 7], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lens.top_probabilities, probabilities.max(-1).values, atol=1e-5, rtol=1e-4)
    assert torch.equal(lens.top_tokens, probabilities.argmax(-1))
    depth = len(streams) - 1
    assert lens.rows == ["embeddings"] + [f"layer {i}" for i in range(depth)]
    assert lens.positions == [str(i) for i in ids[0].tolist()]  # no tokenizer: ids as labels


def test_a_target_per_position_and_the_picture(tmp_path):
    torch.manual_seed(0)
    model = trilogy.build("tiny-gpt2").eval()
    tokens = sample_inputs(1)[0]
    following = torch.cat([tokens[0, 1:], tokens[0, :1]])  # the next token of each position
    lens = logit_lens(model, tokens, following)
    with torch.no_grad():
        probabilities = model(tokens)[0].softmax(-1)  # (T, V)
    torch.testing.assert_close(lens.target_probabilities[-1], probabilities.gather(-1, following[:, None])[:, 0])
    assert lens.targets == [str(i) for i in following.tolist()]
    assert len(lens.top_labels) == model.config.n_layers + 1 and len(lens.top_labels[0]) == 8
    path = lens.save(tmp_path / "lens.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert lens._repr_png_()[:4] == b"\x89PNG"


def test_refusals():
    tokens = sample_inputs(1)[0]
    with pytest.raises(TrilogyError, match="head over the vocabulary"):
        logit_lens(trilogy.build("tiny-bert", head="none").eval(), tokens, 3)
    with pytest.raises(TrilogyError, match="decoder_input_ids"):
        logit_lens(trilogy.build("tiny-t5").eval(), tokens, 3)
    gpt = trilogy.build("tiny-gpt2").eval()
    with pytest.raises(TrilogyError, match="one sequence"):
        logit_lens(gpt, sample_inputs(2)[0], 3)
    with pytest.raises(TrilogyError, match="one per position"):
        logit_lens(gpt, tokens, [1, 2, 3])
