"""Helpers of the checkpoint tests: move weights away from their init, compare only real positions."""

from __future__ import annotations

import torch
from torch import Tensor


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Add noise to every parameter, so norm weights leave 1, biases leave 0 and a swapped or skipped tensor
    changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * std)


def max_diff(ours: Tensor, theirs: Tensor, mask: Tensor | None = None) -> float:
    """max |ours - theirs|, over the real positions only when ``mask`` (B, T) is given for (B, T, ...) tensors."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diff = (ours.detach().float() - theirs.detach().float()).abs()
    if mask is not None:
        diff = diff[mask.bool()]
    return float(diff.max())


def left_padded_prompts(batch: int, vocab: int, pad: int) -> tuple[Tensor, Tensor]:
    """Rows of 14, 10 and 6 real tokens (ids from 4 up), left-padded with ``pad``: all longer than a 4-token
    window. Returns (ids, attention mask), each (batch, 14)."""
    ids = torch.randint(4, vocab, (batch, 14), generator=torch.Generator().manual_seed(batch))
    mask = torch.ones_like(ids)
    for row, length in enumerate([14, 10, 6][:batch]):
        mask[row, : 14 - length] = 0
    return ids.masked_fill(mask == 0, pad), mask


def load_bf16_checked(folder) -> torch.nn.Module:
    """``trilogy.from_pretrained(folder, dtype=bfloat16)``, checked to hold every weight of the fp32 load cast to
    bf16."""
    import trilogy

    ours = trilogy.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    fp32 = trilogy.from_pretrained(folder)
    for (name, ours_weight), fp32_weight in zip(ours.state_dict().items(), fp32.state_dict().values(), strict=True):
        assert torch.equal(ours_weight, fp32_weight.to(torch.bfloat16)), name
    return ours
