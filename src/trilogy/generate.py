"""Decoding. ``generate_text`` is the notebook's exercise, kept with its signature and results (greedy; the
temperature does not change an argmax) but decoding with the KV cache instead of re-running the sequence."""

from __future__ import annotations

import torch
from torch import Tensor

from .blocks.cache import KVCache
from .models import DecoderOnlyTransformer


@torch.no_grad()
def generate_text(model: DecoderOnlyTransformer, input_ids: Tensor, max_length: int = 20,
                  temperature: float = 1.0) -> Tensor:
    """Greedy decoding until the sequence is ``max_length`` tokens long.

    Args:
        input_ids: (B, T) prompt.
    Returns:
        (B, max(T, max_length)) prompt followed by the generated tokens.
    """
    if not isinstance(model, DecoderOnlyTransformer):
        raise TypeError(f"generate_text needs a decoder-only model, got {type(model).__name__}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    model.eval()
    generated = input_ids.clone()
    cache, step_ids = KVCache.empty(model.config.n_layers), input_ids
    for _ in range(max_length - input_ids.size(1)):
        out = model.run(step_ids, cache=cache)
        cache = out.cache
        step_ids = torch.argmax(out.logits[:, -1, :] / temperature, dim=-1, keepdim=True)  # (B, 1)
        generated = torch.cat([generated, step_ids], dim=1)
    return generated
