"""Helpers of the hook point tests: tiny random transformers models with eager attention (so that they return
attention weights) and trilogy's loaded from their files, and inputs."""

from __future__ import annotations

import torch

import trilogy

from .test_convert_parity import hf_model

#: one checkpoint class per family: GPT-2, Llama, BERT with its MLM head, T5 v1.0 (tied and scaled head)
HF_CASES = ["GPT2LMHeadModel", "LlamaForCausalLM-gqa-untied", "BertForMaskedLM", "T5ForConditionalGeneration-v1.0"]


def load_cases(folder_for) -> dict:
    """case -> (the transformers model with eager attention, trilogy's from its files); ``folder_for(case)``
    gives a fresh folder."""
    models = {}
    for case in HF_CASES:
        reference = hf_model(case)
        reference.set_attn_implementation("eager")
        folder = folder_for(case)
        reference.save_pretrained(folder)
        models[case] = reference, trilogy.from_pretrained(folder).eval()
    return models


def sample_inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 8) source or text ids and (batch, 5) decoder ids, in the tiny models' vocabulary (99)."""
    generator = torch.Generator().manual_seed(3)
    return torch.randint(3, 99, (batch, 8), generator=generator), torch.randint(3, 99, (batch, 5), generator=generator)
