"""Hook points: the cached activations against transformers' hidden states and attentions (GPT-2, Llama, BERT,
T5, tiny and random, written by transformers and loaded with trilogy.from_pretrained), the residual stream as
the sum of what wrote to it, per-layer stacking, hooks that change activations and are removed after an error,
and SDPA kept unless a hook reads the scores or weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import trilogy
from trilogy.blocks import attention as attention_module
from trilogy.errors import TrilogyError

from .convert_helpers import max_diff
from .hooks_helpers import HF_CASES, load_cases, sample_inputs


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_cases(tmp_path_factory.mktemp)


def _expected(model: trilogy.TransformerModel, role: str | None, hidden_states, attentions, cross=None) -> dict:
    """Our hook names -> transformers' tensors: hidden_states[i] is the stream before layer i, and the last one
    the stream after the final norm (BERT: after the last layer, which has no final norm after it)."""
    prefix = f"{role}." if role is not None else ""
    depth = len(attentions)
    expected = {f"{prefix}blocks.{i}.hook_resid_pre": hidden_states[i] for i in range(depth)}
    has_final_norm = model.stacks()[role or model.structure.output.name].final_norm is not None
    last = f"{prefix}ln_final.hook_normalized" if has_final_norm else f"{prefix}blocks.{depth - 1}.hook_resid_post"
    expected[last] = hidden_states[depth]
    expected |= {f"{prefix}blocks.{i}.attn.hook_pattern": attentions[i] for i in range(depth)}
    if cross is not None:
        expected |= {f"{prefix}blocks.{i}.cross_attn.hook_pattern": cross[i] for i in range(depth)}
    return expected


@pytest.mark.parametrize("case", HF_CASES)
def test_cached_streams_and_patterns_equal_transformers(loaded, case):
    reference, ours = loaded[case]
    source, target = sample_inputs()
    with torch.no_grad():
        if ours.structure.has_source:
            theirs = reference(input_ids=source, decoder_input_ids=target, output_hidden_states=True,
                               output_attentions=True)
            _, cache = ours.run_with_cache(source, target)
            expected = (_expected(ours, "encoder", theirs.encoder_hidden_states, theirs.encoder_attentions)
                        | _expected(ours, "decoder", theirs.decoder_hidden_states, theirs.decoder_attentions,
                                    theirs.cross_attentions))
        else:
            theirs = reference(input_ids=source, output_hidden_states=True, output_attentions=True)
            _, cache = ours.run_with_cache(source)
            expected = _expected(ours, None, theirs.hidden_states, theirs.attentions)
    differences = {name: max_diff(cache[name], value) for name, value in expected.items()}
    assert max(differences.values()) <= 1e-5, differences


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama", "tiny-t5"])
def test_residual_stream_is_the_sum_of_what_wrote_to_it(preset):
    torch.manual_seed(0)
    model = trilogy.build(preset).eval()
    source, target = sample_inputs()
    inputs = (source, target) if model.structure.has_source else (source,)
    _, cache = model.run_with_cache(*inputs)
    for spec in model.structure.stacks:
        role = spec.name if len(model.structure.stacks) > 1 else None
        prefix = f"{role}." if role else ""
        components = cache.residual_components(role)
        expected_parts = 1 + (model.config.position in ("learned", "sinusoidal")) \
            + spec.n_layers * (3 if spec.cross_attention else 2)
        assert len(components) == expected_parts
        total = sum(components.values())  # (B, T, C); position embeddings broadcast over the batch
        torch.testing.assert_close(total, cache[f"{prefix}blocks.{spec.n_layers - 1}.hook_resid_post"],
                                   atol=1e-5, rtol=1e-5)


def test_residual_components_refuse_a_post_norm_model():
    model = trilogy.build("tiny-bert").eval()
    _, cache = model.run_with_cache(sample_inputs()[0])
    with pytest.raises(TrilogyError, match="post-norm"):
        cache.residual_components()


def test_residual_components_name_what_the_cache_lacks():
    model = trilogy.build("tiny-gpt2").eval()
    _, cache = model.run_with_cache(sample_inputs()[0], names=["hook_embed"])
    with pytest.raises(TrilogyError, match="hook_pos_embed"):
        cache.residual_components()


def test_stacking_per_layer():
    model = trilogy.build("tiny-t5").eval()
    source, target = sample_inputs()
    _, cache = model.run_with_cache(source, target, names=lambda name: "hook_resid_post" in name or "pattern" in name)
    config = model.config
    assert cache.stack("hook_resid_post", "encoder").shape == (config.n_layers, 2, 8, config.d_model)
    assert cache.stack("cross_attn.hook_pattern", "decoder").shape == (config.n_decoder_layers, 2, config.n_heads, 5,
                                                                       8)
    assert torch.equal(cache.stack("attn.hook_pattern", "decoder")[1], cache["decoder.blocks.1.attn.hook_pattern"])
    assert all("hook_resid_post" in name or "pattern" in name for name in cache)
    with pytest.raises(TrilogyError, match="name one"):
        cache.stack("hook_resid_post")
    gpt = trilogy.build("tiny-gpt2").eval()
    _, cache = gpt.run_with_cache(source, names=["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
    assert cache.stack("hook_resid_post").shape == (2, 2, 8, gpt.config.d_model)
    assert list(cache) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def test_names_are_checked_before_anything_runs():
    model = trilogy.build("tiny-gpt2").eval()
    with pytest.raises(TrilogyError, match="did you mean blocks.0.attn.hook_pattern"):
        model.run_with_cache(sample_inputs()[0], names=["blocks.0.hook_pattern"])
    with pytest.raises(TrilogyError, match="no hook point"):
        with model.hooks([("blocks.9.hook_resid_post", lambda x, name: x)]):
            pass
    assert not any(point.functions for point in model.hook_points().values())


def test_hooks_change_activations_and_are_removed_after_an_error():
    torch.manual_seed(0)
    model = trilogy.build("tiny-gpt2").eval()
    tokens = sample_inputs()[0]
    with torch.no_grad():
        before = model(tokens)
        with pytest.raises(RuntimeError, match="inside the block"):
            with model.hooks([("blocks.1.attn.hook_v", lambda v, name: torch.zeros_like(v))]):
                changed = model(tokens)
                raise RuntimeError("inside the block")
        assert not torch.allclose(changed, before)
        after = model(tokens)

        def failing(activation, name):
            raise ValueError(f"the hook on {name} fails")

        with pytest.raises(ValueError, match="blocks.0.mlp.hook_post fails"):
            with model.hooks([("blocks.0.mlp.hook_post", failing)]):
                model(tokens)
    assert torch.equal(after, before)
    assert not any(point.functions for point in model.hook_points().values())


def test_hooks_that_return_nothing_leave_the_activation_and_run_in_order():
    model = trilogy.build("tiny-gpt2").eval()
    tokens = sample_inputs()[0]
    seen = []
    with torch.no_grad(), model.hooks([("blocks.0.hook_resid_post", lambda x, name: seen.append(name)),
                                       ("blocks.0.hook_resid_post", lambda x, name: x * 2),
                                       ("blocks.0.hook_resid_post", lambda x, name: seen.append(x))]):
        out, cache = model.run_with_cache(tokens, names=["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"])
    assert seen[0] == "blocks.0.hook_resid_post"
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], seen[1])  # the doubled stream reached layer 1
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], seen[1])


def test_scores_and_weights_take_the_explicit_path_only_when_hooked(monkeypatch):
    model = trilogy.build("tiny-llama").eval()
    tokens = sample_inputs()[0]
    calls = []
    sdpa = attention_module.F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", counted)
    with torch.no_grad():
        plain = model(tokens)
        assert len(calls) == model.config.n_layers
        calls.clear()
        out, _ = model.run_with_cache(tokens, names=["blocks.0.hook_resid_post", "blocks.1.attn.hook_q",
                                                     "blocks.1.attn.hook_z"])
        assert len(calls) == model.config.n_layers
        calls.clear()
        watched, cache = model.run_with_cache(tokens, names=["blocks.1.attn.hook_pattern"])
        assert len(calls) == model.config.n_layers - 1
    assert torch.equal(out.logits, plain)
    torch.testing.assert_close(watched.logits, plain, atol=1e-5, rtol=1e-5)
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, model.config.n_heads, 8, 8)


def test_a_changed_pattern_changes_the_output():
    """Uniform attention over the keys each query may see: the output becomes the mean of those values."""
    model = trilogy.build("tiny-gpt2").eval()
    tokens = sample_inputs()[0]

    def uniform(pattern, name):
        allowed = pattern > 0  # (B, H, T, S): causal, no padding
        return allowed / allowed.sum(-1, keepdim=True)

    with torch.no_grad(), model.hooks([("blocks.0.attn.hook_pattern", uniform)]):
        _, cache = model.run_with_cache(tokens, names=["blocks.0.attn.hook_v", "blocks.0.attn.hook_z"])
    v = cache["blocks.0.attn.hook_v"]  # (B, H, T, D)
    running_mean = v.cumsum(2) / torch.arange(1, 9)[:, None]
    torch.testing.assert_close(cache["blocks.0.attn.hook_z"], running_mean)


def test_hooks_act_in_decoding_steps_too():
    model = trilogy.build("tiny-gpt2").eval()
    tokens = sample_inputs()[0][:1]
    lengths = []
    with model.hooks([("blocks.0.hook_resid_post", lambda x, name: lengths.append(x.size(1)))]):
        model.generate(tokens, max_new_tokens=3)
    assert lengths == [8, 1, 1]


def test_queries_and_keys_before_and_after_rotary():
    """TransformerLens's names: hook_q and hook_k as projected, hook_rot_q and hook_rot_k after rotary (only in
    models with rotary positions)."""
    model = trilogy.build("tiny-llama").eval()
    tokens = sample_inputs()[0]
    _, cache = model.run_with_cache(tokens, names=lambda name: name.startswith("blocks.0.attn."))
    cos, sin = model.stack.rotary(torch.arange(8)[None])
    rotated = trilogy.blocks.position.apply_rotary(cache["blocks.0.attn.hook_q"], cos, sin)
    torch.testing.assert_close(cache["blocks.0.attn.hook_rot_q"], rotated)
    assert cache["blocks.0.attn.hook_rot_k"].shape == (2, model.config.n_kv_heads, 8, model.config.d_head)
    assert not any("hook_rot" in name for name in trilogy.build("tiny-gpt2").hook_points())


def _documented_names() -> set[str]:
    """The names in docs/inside.md's table: a row's first name in full, the others of a row as its siblings."""
    names = set()
    table = (Path(__file__).resolve().parent.parent / "docs" / "inside.md").read_text().split("## The hook points")[1]
    for row in re.findall(r"^\| (`.*?) \|", table, re.M):
        first, *siblings = re.findall(r"`([^`]+)`", row)
        names.add(first)
        names |= {first.rsplit(".", 1)[0] + "." + sibling for sibling in siblings}
    return names


def test_the_table_in_the_docs_lists_every_hook_point():
    seen = set()
    for preset, changes in [("tiny-gpt2", {}), ("tiny-llama", {}), ("tiny-bert", {}), ("tiny-t5", {}),
                            ("tiny-gpt2", {"parallel_residual": True})]:
        names = trilogy.build(preset, **changes).hook_points()
        general = {re.sub(r"^(encoder|decoder)\.", "", re.sub(r"blocks\.\d+\.", "blocks.{i}.", name)) for name in names}
        assert general <= _documented_names(), general - _documented_names()
        if changes:
            assert "blocks.{i}.hook_resid_mid" not in general  # parallel layers have no stream between branches
        seen |= general
    assert seen == _documented_names()


def test_viz_and_hooks_are_reachable_after_import_trilogy():
    """``import trilogy; trilogy.viz.show(...)`` works without importing ``trilogy.viz`` by name, in a fresh
    process where nothing imported it before."""
    import subprocess
    import sys

    script = "import trilogy; print(callable(trilogy.viz.show), callable(trilogy.hooks.run_with_cache))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "True"], result.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        trilogy.nothing  # noqa: B018
