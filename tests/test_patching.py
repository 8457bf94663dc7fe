"""Activation patching: the whole clean stream patched in at a layer gives the clean logits exactly, a patched
token position restores exactly what it should, ablating every head of a layer is removing its attention
output, the shapes of head and cross-attention head patching, and the pictures."""

from __future__ import annotations

import pytest
import torch

import trilogy
from trilogy.errors import TrilogyError
from trilogy.viz.patching import Patching, patch_heads, patch_residual

from .hooks_helpers import sample_inputs


def _model(preset: str) -> trilogy.TransformerModel:
    torch.manual_seed(0)
    return trilogy.build(preset).eval()


def _corrupted(ids: torch.Tensor, position: int) -> torch.Tensor:
    changed = ids.clone()
    changed[:, position] = (changed[:, position] + 1) % 99 + 3
    return changed


# (preset, the stack patched, which of run's inputs is corrupted)
STREAMS = [("tiny-gpt2", None, 0), ("tiny-llama", None, 0), ("tiny-bert", None, 0), ("tiny-t5", "encoder", 0),
           ("tiny-t5", "decoder", 1)]


@pytest.mark.parametrize(("preset", "role", "corrupt"), STREAMS)
def test_the_whole_clean_stream_at_a_layer_gives_the_clean_logits(preset, role, corrupt):
    model = _model(preset)
    source, target = sample_inputs()
    clean = (source, target) if model.structure.has_source else (source,)
    corrupted = tuple(_corrupted(ids, 2) if index == corrupt else ids for index, ids in enumerate(clean))
    prefix = f"{role}." if role else ""
    depth = model.stacks()[role or model.structure.output.name].spec.n_layers
    with torch.no_grad():
        clean_out, cache = model.run_with_cache(*clean, names=lambda name: name.endswith("hook_resid_pre"))
        assert not torch.equal(model.run(*corrupted).logits, clean_out.logits)
        for layer in range(depth):
            name = f"{prefix}blocks.{layer}.hook_resid_pre"
            with model.hooks([(name, lambda x, name: cache[name])]):
                assert torch.equal(model.run(*corrupted).logits, clean_out.logits), name


def test_patching_one_position_restores_exactly_what_it_carries():
    """A causal model, one corrupted token at position 3: the streams before it are the same in both runs, so
    patching them changes nothing; at layer 0 the corrupted token's own stream is all that differs, so patching
    it restores the clean run."""
    model = _model("tiny-gpt2")
    clean = sample_inputs(1)[0]
    corrupted = _corrupted(clean, 3)

    def metric(logits):  # the last position's logit of token 5
        return logits[0, -1, 5]

    result = patch_residual(model, clean, corrupted, metric)
    assert result.values.shape == (model.config.n_layers, 8)
    assert result.values[0, 3] == result.clean
    assert result.clean != result.corrupted
    others = torch.cat([result.values[0, :3], result.values[0, 4:], result.values[1:, :3].flatten()])
    assert (others == result.corrupted).all()
    assert result.columns[3] == f"{clean[0, 3]}/{corrupted[0, 3]}" and result.columns[2] == str(int(clean[0, 2]))


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-gpt2"])
def test_ablating_every_head_of_a_layer_is_removing_its_attention_output(preset):
    """Zero z of every head: the layer adds only its output projection's bias (none in Llama)."""
    model = _model(preset)
    tokens = sample_inputs()[0]
    for layer in range(model.config.n_layers):
        bias = model.stack.layers[layer].self_attn.out.bias
        with torch.no_grad():
            with model.hooks([(f"blocks.{layer}.attn.hook_z", lambda z, name: torch.zeros_like(z))]):
                ablated = model(tokens)
            left = torch.zeros(model.config.d_model) if bias is None else bias  # what the layer still adds
            with model.hooks([(f"blocks.{layer}.hook_attn_out", lambda out, name, left=left: left.expand_as(out))]):
                assert torch.equal(model(tokens), ablated)


def test_heads_and_cross_attention_heads(tmp_path):
    model = _model("tiny-t5")
    source, target = sample_inputs(1)
    clean, corrupted = (source, target), (_corrupted(source, 4), target)

    def metric(logits):
        return logits[0, -1].log_softmax(-1)[9]

    cross = patch_heads(model, clean, corrupted, metric, cross=True)
    config = model.config
    assert cross.what == "cross-attention heads" and cross.values.shape == (config.n_decoder_layers, config.n_heads)
    assert cross.columns == [f"head {h}" for h in range(config.n_heads)]
    encoder_heads = patch_heads(model, clean, corrupted, metric)
    assert encoder_heads.values.shape == (config.n_layers, config.n_heads)
    encoder_stream = patch_residual(model, clean, corrupted, metric)
    assert encoder_stream.values.shape == (config.n_layers, 8)
    decoder_stream = patch_residual(model, clean, corrupted, metric, role="decoder")
    assert decoder_stream.values.shape == (config.n_decoder_layers, 5)
    for result in (cross, encoder_heads, encoder_stream, decoder_stream):
        assert torch.isfinite(result.values).all()
    assert cross.save(tmp_path / "cross.png").read_bytes()[:4] == b"\x89PNG"
    assert encoder_stream._repr_png_()[:4] == b"\x89PNG"
    same = patch_heads(model, clean, clean, metric, cross=True)  # nothing to restore
    assert (same.values == same.clean).all() and same.clean == same.corrupted


def test_the_title_of_a_narrow_picture_stays_inside_it():
    """Four heads draw a figure narrower than its title, which is wrapped rather than cut at both edges."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    heads = Patching("cross-attention heads", torch.zeros(2, 4), ["layer 0", "layer 1"],
                     [f"head {h}" for h in range(4)], clean=5.38, corrupted=-6.07)
    figure = heads.figure()
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    title = figure.axes[0].title.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= figure.bbox.x1


def test_refusals():
    gpt = _model("tiny-gpt2")
    tokens = sample_inputs()[0]
    with pytest.raises(TrilogyError, match="no cross-attention"):
        patch_heads(gpt, tokens, tokens, lambda logits: logits.sum(), cross=True)
    with pytest.raises(TrilogyError, match="not 'encoder'"):
        patch_residual(gpt, tokens, tokens, lambda logits: logits.sum(), role="encoder")
