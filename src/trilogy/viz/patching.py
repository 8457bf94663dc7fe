"""Activation patching: run a corrupted input with one activation taken from a clean input's run, and see how
much of the clean behaviour comes back, by a metric of the logits the user chooses. Patched one at a time: the
residual stream before each layer at each position (``patch_residual``), and each attention head's output in
each layer (``patch_heads``; with ``cross=True`` a decoder's cross-attention heads).

Clean and corrupted inputs are what ``model.run`` takes (an encoder-decoder: source and decoder input), of the
same shapes, so that positions match.

Legend: L layers, B batch, T positions, H heads, D head size, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import StackSpec
from ..errors import TrilogyError
from ..hooks import stack_prefix
from ..models import TransformerModel
from .heatmap import Picture, heatmap
from .tokens import token_label

#: the logits (B, T, V) of a run -> one number (e.g. the logit difference of the right and the wrong answer)
Metric = Callable[[Tensor], "float | Tensor"]
Inputs = Tensor | tuple[Tensor, ...]


@dataclass
class Patching(Picture):
    """The metric of the corrupted run with one activation patched from the clean run, per (row, column)."""

    what: str  # "residual stream", "attention heads", "cross-attention heads"
    values: Tensor  # (L, T) or (L, H)
    rows: list[str]  # L labels
    columns: list[str]  # T positions or H heads
    clean: float  # the metric of the clean run
    corrupted: float  # the metric of the corrupted run, unpatched

    def figure(self):
        return heatmap(self.values, self.rows, self.columns, f"patching the {self.what} from the clean run "
                       f"(clean {self.clean:.3g}, corrupted {self.corrupted:.3g})", "metric")


@torch.no_grad()
def patch_residual(model: TransformerModel, clean: Inputs, corrupted: Inputs, metric: Metric, *,
                   role: str | None = None) -> Patching:
    """Patch the residual stream before each layer (``blocks.{i}.hook_resid_pre``) at each position.

    Args:
        clean, corrupted: the inputs of the two runs (a tensor, or a tuple of ``model.run``'s arguments);
        metric: the logits (B, T, V) -> a number;
        role: the stack to patch ("encoder", "decoder"); default the first, which reads the input.
    Returns:
        ``Patching`` with values (L, T), a column per position of that stack's input.
    """
    clean, corrupted = _arguments(clean), _arguments(corrupted)
    spec = _stack_spec(model, role)
    names = [f"{stack_prefix(model, spec.name)}blocks.{i}.hook_resid_pre" for i in range(spec.n_layers)]
    clean_value, saved = _clean_run(model, clean, metric, names)
    ids = [run[_input_index(model, spec.name)] for run in (clean, corrupted)]
    length = ids[0].size(1)
    values = torch.stack([torch.tensor([_patched_metric(model, corrupted, metric, name, saved[name], position=t)
                                        for t in range(length)]) for name in names])  # (L, T)
    columns = [_position_label(model, ids[0][0, t], ids[1][0, t]) for t in range(length)]
    return Patching("residual stream", values, [f"layer {i}" for i in range(spec.n_layers)], columns,
                    clean_value, _metric(model, corrupted, metric))


@torch.no_grad()
def patch_heads(model: TransformerModel, clean: Inputs, corrupted: Inputs, metric: Metric, *, cross: bool = False,
                role: str | None = None) -> Patching:
    """Patch each head's output (``blocks.{i}.attn.hook_z``; ``cross_attn.hook_z`` with ``cross``) at every
    position.

    Args:
        clean, corrupted, metric: as in ``patch_residual``;
        cross: the cross-attention heads of the stack that has them (an encoder-decoder's decoder);
        role: the stack ("encoder", "decoder"); default the first, or with ``cross`` the decoder.
    Returns:
        ``Patching`` with values (L, H).
    """
    clean, corrupted = _arguments(clean), _arguments(corrupted)
    if cross and role is None:
        role = next((spec.name for spec in model.structure.stacks if spec.cross_attention), None)
    spec = _stack_spec(model, role)
    if cross and not spec.cross_attention:
        raise TrilogyError(f"the {spec.name} stack has no cross-attention")
    attention = "cross_attn" if cross else "attn"
    names = [f"{stack_prefix(model, spec.name)}blocks.{i}.{attention}.hook_z" for i in range(spec.n_layers)]
    clean_value, saved = _clean_run(model, clean, metric, names)
    heads = model.config.n_heads
    values = torch.stack([torch.tensor([_patched_metric(model, corrupted, metric, name, saved[name], head=h)
                                        for h in range(heads)]) for name in names])  # (L, H)
    return Patching("cross-attention heads" if cross else "attention heads", values,
                    [f"layer {i}" for i in range(spec.n_layers)], [f"head {h}" for h in range(heads)], clean_value,
                    _metric(model, corrupted, metric))


def _input_index(model: TransformerModel, role: str) -> int:
    """Which of ``model.run``'s positional arguments feeds the stack ``role``: the first stack reads the first
    (input_ids), an encoder-decoder's decoder the second (decoder_input_ids)."""
    return [spec.name for spec in model.structure.stacks].index(role)


def _arguments(inputs: Inputs) -> tuple[Tensor, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _stack_spec(model: TransformerModel, role: str | None) -> StackSpec:
    stacks = {spec.name: spec for spec in model.structure.stacks}
    if role is None:
        return model.structure.stacks[0]
    if role not in stacks:
        raise TrilogyError(f"this model's stacks are {', '.join(map(repr, stacks))}, not {role!r}")
    return stacks[role]


def _metric(model: TransformerModel, inputs: tuple[Tensor, ...], metric: Metric) -> float:
    return float(metric(model.run(*inputs).logits))


def _clean_run(model: TransformerModel, inputs: tuple[Tensor, ...], metric: Metric, names: list[str]
               ) -> tuple[float, dict[str, Tensor]]:
    model.eval()
    output, cache = model.run_with_cache(*inputs, names=names)
    return float(metric(output.logits)), dict(cache)


def _patched_metric(model: TransformerModel, inputs: tuple[Tensor, ...], metric: Metric, name: str, clean: Tensor,
                    position: int | None = None, head: int | None = None) -> float:
    """The metric of a run of ``inputs`` with the activation ``name`` taken from ``clean`` at one position
    (dim 1 of a (B, T, C) stream) or one head (dim 1 of a (B, H, T, D) z)."""
    index = position if position is not None else head

    def patch(activation: Tensor, _name: str) -> Tensor:
        patched = activation.clone()
        patched[:, index] = clean[:, index]
        return patched

    with model.hooks([(name, patch)]):
        return _metric(model, inputs, metric)


def _position_label(model: TransformerModel, clean_id: Tensor, corrupted_id: Tensor) -> str:
    """A position's clean token, and its corrupted one where they differ ("Paris/Rome")."""
    clean, corrupted = int(clean_id), int(corrupted_id)
    label = token_label(model, clean)
    return label if clean == corrupted else f"{label}/{token_label(model, corrupted)}"
