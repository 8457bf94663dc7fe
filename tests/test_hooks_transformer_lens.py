"""The hook points against TransformerLens's, name by name and value by value, on the same tiny random checkpoints
(TransformerLens 4's ``TransformerBridge`` over transformers' models). Skipped where transformer_lens is not
installed: it is not a dev dependency (docs/inside.md says why and how to run this).

TransformerLens keeps per-head tensors as (B, T, H, D), trilogy as (B, H, T, D); it masks scores with a large
negative number, trilogy with -inf. Its T5 names differ from trilogy's scheme (``encoder_blocks.0``,
``decoder_blocks.0.self_attn``, ``hook_resid_mid2``), its final norm's output is ``ln_final.hook_out``, and a few
names are left out (``SKIPPED``)."""

from __future__ import annotations

import re

import pytest
import torch

from .hooks_helpers import HF_CASES, load_cases, sample_inputs

transformer_lens = pytest.importorskip("transformer_lens")
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

#: names left out of the comparison, per family. TransformerLens 4.3's BERT bridge reads four otherwise:
#: hook_embed after the embedding LayerNorm, hook_attn_out after the add and norm (trilogy's hook_resid_mid),
#: hook_resid_mid something else again, and hook_attn_scores that are not what its own hook_pattern is the
#: softmax of. Its T5 bridge has no hook point on the token embeddings.
SKIPPED = {"Bert": re.compile(r"^(hook_embed|blocks\.\d+\.(hook_attn_out|hook_resid_mid|attn\.hook_attn_scores))$"),
           "T5": re.compile(r"^(encoder|decoder)\.hook_embed$")}
#: TransformerLens 4 calls the final norm's output (weight and bias applied) ln_final.hook_out, and the rows
#: before its weight ln_final.hook_normalized; its HookedTransformer (and trilogy) call the output hook_normalized
FINAL_NORM = (r"ln_final\.hook_normalized$", "ln_final.hook_out")
T5_NAMES = [(r"^(encoder|decoder)\.blocks\.", r"\1_blocks."), (r"^(decoder_blocks\.\d+)\.attn\.", r"\1.self_attn."),
            (r"hook_resid_mid_cross$", "hook_resid_mid2"), (r"^(encoder|decoder)\.ln_final", r"\1_ln_final")]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folders = {}

    def folder_for(case):
        folders[case] = tmp_path_factory.mktemp(case)
        return folders[case]

    models = load_cases(folder_for)
    return {case: (*models[case], folders[case]) for case in models}


def _tokenizer():
    """A word-level tokenizer over the tiny vocabulary, made here: the bridge wants one, and none is downloaded."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocabulary = {f"t{i}": i for i in range(99)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocabulary, unk_token="t0")),
                                   unk_token="t0", pad_token="t0")


def _their_name(name: str, case: str) -> str:
    for pattern, replacement in (T5_NAMES if case.startswith("T5") else []) + [FINAL_NORM]:
        name = re.sub(pattern, replacement, name)
    return name


@pytest.mark.parametrize("case", HF_CASES)
def test_every_hook_point_equals_transformer_lens(loaded, case):
    reference, ours, folder = loaded[case]
    bridge = TransformerBridge.boot_transformers(str(folder), hf_model=reference, tokenizer=_tokenizer(),
                                                 device="cpu")
    source, target = (ids[:1] for ids in sample_inputs())
    with torch.no_grad():
        if ours.structure.has_source:
            _, theirs = bridge.run_with_cache(source, decoder_input=target)
            _, cache = ours.run_with_cache(source, target)
        else:
            _, theirs = bridge.run_with_cache(source)
            _, cache = ours.run_with_cache(source)
    compared = {}
    for name, ours_value in cache.items():
        if any(case.startswith(family) and skipped.match(name) for family, skipped in SKIPPED.items()):
            continue
        their_name = _their_name(name, case)
        assert their_name in theirs, f"{name} ({their_name}) is not a TransformerLens hook point"
        their_value = theirs[their_name]
        if ours_value.dim() == 4 and ours_value.shape != their_value.shape:  # (B, H, T, D) against (B, T, H, D)
            ours_value = ours_value.transpose(1, 2)
        allowed = torch.isfinite(ours_value)  # scores: -inf here, a large negative number there
        compared[name] = float((ours_value[allowed] - their_value[allowed]).abs().max())
    assert len(compared) >= len(cache) - 4 * ours.config.n_layers
    assert max(compared.values()) <= 1e-5, {k: v for k, v in compared.items() if v > 1e-5}
