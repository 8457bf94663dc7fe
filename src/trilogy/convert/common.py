"""Small helpers the family modules share: activation names, config.json field checks, and the task heads'
labels and tensor names."""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
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


def labels_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig fields of a classifier's labels: ``num_labels`` and the names (``extra["id2label"]``)."""
    labels = field(hf, "id2label")
    named = isinstance(labels, dict) and bool(labels)
    return dict(num_labels=len(labels) if named else field(hf, "num_labels", 2),
                extra={"id2label": labels} if named else {})


def labels_to_hf(config: ModelConfig) -> dict[str, Any]:
    """``id2label`` and ``label2id`` of a model with a task head (a span head's two: start and end), else none."""
    classifier = config.structure.classifier
    if classifier is None:
        return {}
    count = 2 if classifier == "span" else config.num_labels
    labels = config.extra.get("id2label")
    if not isinstance(labels, dict) or len(labels) != count:
        labels = {str(i): f"LABEL_{i}" for i in range(count)}
    return {"id2label": labels, "label2id": {name: int(i) for i, name in labels.items()}}


def task_head_map(config: ModelConfig, names: dict[str, str]) -> dict[str, str]:
    """KEY_MAP entries of the task head: our ``head.proj`` under the name the family's class gives its
    classifier (``names``: by the structure's ``classifier``, e.g. ``{"span": "qa_outputs"}``)."""
    name = names.get(config.structure.classifier or "")
    return {} if name is None else {"head.proj.weight": f"{name}.weight", "head.proj.bias": f"{name}.bias"}


def weight_and_bias(ours: str, theirs: str) -> dict[str, str]:
    """KEY_MAP entries of a layer with a weight and a bias (a linear layer, a LayerNorm), ours -> theirs."""
    return {f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"}
