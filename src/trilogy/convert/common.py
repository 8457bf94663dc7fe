"""Small helpers the family modules share: activation names and config.json field checks."""

from __future__ import annotations

from typing import Any

from ..errors import CheckpointError

#: Hugging Face activation names (``ACT2FN`` keys) -> ours
ACTIVATIONS_FROM_HF = {
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh",
    "relu": "relu", "silu": "silu", "swish": "silu",
}
#: ours -> the name written to config.json
ACTIVATIONS_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation_from_hf(name: Any, field: str) -> str:
    if name not in ACTIVATIONS_FROM_HF:
        raise CheckpointError(f"config.json: {field}={name!r} is not supported; supported: "
                              f"{', '.join(sorted(ACTIVATIONS_FROM_HF))}")
    return ACTIVATIONS_FROM_HF[name]


def field(hf: dict[str, Any], name: str, default: Any = None, *, required: bool = False) -> Any:
    """A config.json value; ``required`` ones must be present."""
    if name not in hf or hf[name] is None:
        if required:
            raise CheckpointError(f"config.json lacks {name!r}")
        return default
    return hf[name]


def refuse(hf: dict[str, Any], name: str, allowed: tuple, why: str) -> None:
    """Refuse a checkpoint whose ``name`` field (when present) holds a value trilogy does not reproduce."""
    if name in hf and hf[name] not in allowed:
        raise CheckpointError(f"config.json: {name}={hf[name]!r} is not supported ({why})")
