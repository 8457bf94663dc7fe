"""Changing activations: ``hooks(model, [(name, fn), ...])`` registers functions on named hook points for the
length of a ``with`` block, and removes them when it ends, by an error too.

A hook function receives the activation and the hook point's name, and returns the activation to use instead,
or None to leave it as it is (reading it, or changing it in place under ``torch.no_grad()``)::

    def ablate_head(z, name):  # z: (B, H, T, D), blocks.{i}.attn.hook_z
        z = z.clone()
        z[:, 3] = 0.0  # head 3's output
        return z

    with model.hooks([("blocks.1.attn.hook_z", ablate_head)]):
        logits = model(input_ids)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from difflib import get_close_matches
from functools import partial

from torch import Tensor

from ..errors import TrilogyKeyError
from ..models import TransformerModel
from .names import hook_points

#: (activation, hook point name) -> the activation to use instead, or None to keep it
HookFunction = Callable[[Tensor, str], "Tensor | None"]


@contextmanager
def hooks(model: TransformerModel, fwd_hooks: Iterable[tuple[str, HookFunction]]) -> Iterator[TransformerModel]:
    """Call each function on its hook point's activation in every forward pass (and decoding step) inside the
    ``with`` block; several on one point run in the order given. Yields the model.

    Raises:
        TrilogyKeyError: a name the model has no hook point for (before anything is registered).
    """
    points = hook_points(model)
    fwd_hooks = list(fwd_hooks)
    for name, _ in fwd_hooks:
        check_name(name, points)
    added = [(points[name], partial(_call, function, name)) for name, function in fwd_hooks]
    try:
        for point, call in added:
            point.add(call)
        yield model
    finally:
        for point, call in added:
            if call in point.functions:
                point.remove(call)


def check_name(name: str, names: Collection[str], where: str = "this model") -> None:
    """Refuse a name that is not one of ``names`` (a model's hook points, or a cache's), suggesting the nearest
    ones; ``where`` they are, for the message."""
    if name in names:
        return
    near = get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else " (docs/inside.md lists the names)"
    raise TrilogyKeyError(f"{where} has no hook point {name!r}{hint}")


def _call(function: HookFunction, name: str, activation: Tensor) -> Tensor | None:
    return function(activation, name)
