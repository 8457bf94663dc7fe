"""AdamW with weight decay only where it belongs, and the learning-rate schedule: linear warmup, then cosine
decay to ``min_lr_ratio`` of the peak (nanoGPT's ``get_lr``)."""

from __future__ import annotations

import math

import torch
from torch import nn


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: matrices of Linear layers decay; norms, biases and embeddings do not.

    A weight tied between the embedding and the LM head is an embedding and is not decayed."""
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():  # parameters() yields a tied weight once
        if not p.requires_grad:
            continue
        is_matrix = id(p) in linear_weights and id(p) not in embedding_weights
        (decay if is_matrix else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW over ``decay_groups``, fused (one kernel over all the parameters: on CPU half the for-loop's
    time; transformers' Trainer also defaults to it from torch 2.8)."""
    return torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, betas=betas, eps=1e-8, fused=True)


def lr_at(step: int, peak_lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.1) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warmup from peak/warmup to the peak over
    ``warmup_steps``, then cosine decay to ``min_lr_ratio * peak`` at ``max_steps``."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if max_steps <= warmup_steps:
        return peak_lr
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
