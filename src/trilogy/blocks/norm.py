"""Normalisation: LayerNorm (with or without bias) and RMSNorm, chosen by the config's ``norm`` string."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig


def build_norm(config: ModelConfig, d_model: int | None = None) -> nn.Module:
    """The config's norm over the model width (or ``d_model`` when given)."""
    width = d_model or config.d_model
    if config.norm == "rmsnorm":
        return nn.RMSNorm(width, eps=config.norm_eps)
    return nn.LayerNorm(width, eps=config.norm_eps, bias=config.norm_bias)
