"""GPT-2 parity against transformers, both directions (quick check; the full matrix is in test_convert_parity)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import trilogy

from .convert_helpers import max_diff, perturb


def test_gpt2_lm_both_directions(tmp_path):
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    perturb(reference)
    reference.save_pretrained(tmp_path / "hf")
    ids = torch.randint(0, 99, (2, 9))
    ours = trilogy.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        assert max_diff(ours(ids), reference(ids).logits) <= 1e-4
    perturb(ours, seed=5)
    ours.save_pretrained(tmp_path / "ours", format="hf")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert max_diff(ours(ids), back(ids).logits) <= 1e-4
