"""Feed-forward blocks: MLP (ReLU, GELU exact or tanh) and GatedMLP (GEGLU, SwiGLU, T5 v1.1 gated-GELU).

Hook points (``hook_point.py``): ``hook_pre`` the activation's input, ``hook_post`` the hidden layer ``down``
reads (gated: the activation's output times the linear half, ``hook_pre_linear``).

Legend: B batch, T length, C model width, F hidden width (d_ff).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .dropout import Dropout
from .hook_point import HookPoint
from .init import InitScheme

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "tanh": torch.tanh,  # BERT's pooler
}


class Activation(nn.Module):
    """A named activation function, visible in ``print(model)``."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class MLP(nn.Module):
    """down(act(up(x))): (B, T, C) -> (B, T, C)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.act = Activation(config.activation)
        self.dropout = Dropout(config.dropout)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # (B, T, F) each

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.up)
        scheme.linear(self.down, residual=True)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.hook_post(self.act(self.hook_pre(self.up(x))))  # (B, T, F)
        return self.down(self.dropout(hidden) if self.training else hidden)


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): GEGLU with GELU, SwiGLU with SiLU. (B, T, C) -> (B, T, C)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.act = Activation(config.activation)
        self.dropout = Dropout(config.dropout)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.hook_pre, self.hook_pre_linear = HookPoint(), HookPoint()  # (B, T, F) each
        self.hook_post = HookPoint()

    def init_weights(self, scheme: InitScheme) -> None:
        scheme.linear(self.gate)
        scheme.linear(self.up)
        scheme.linear(self.down, residual=True)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.act(self.hook_pre(self.gate(x)))  # (B, T, F)
        hidden = self.hook_post(gate * self.hook_pre_linear(self.up(x)))  # (B, T, F)
        return self.down(self.dropout(hidden) if self.training else hidden)


def build_mlp(config: ModelConfig) -> nn.Module:
    return GatedMLP(config) if config.gated_mlp else MLP(config)
