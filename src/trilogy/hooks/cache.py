"""Reading activations: ``run_with_cache(model, *inputs, names=...)`` runs ``model.run`` once and keeps the
activation of every named hook point in an ``ActivationCache``, a mapping name -> tensor with per-layer stacking
(``cache.stack("hook_resid_post")`` -> (L, B, T, C)) and the residual stream as a sum of what wrote to it.

Legend: L layers, B batch, T length, C model width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig, StackSpec
from ..errors import TrilogyError
from ..models import ModelOutput, TransformerModel
from .editing import check_name, hooks
from .names import hook_points, stack_prefix

#: which hook points to keep: their names, or a test on a name (``lambda name: name.endswith("hook_pattern")``)
Names = Iterable[str] | Callable[[str], bool] | None


class ActivationCache(Mapping[str, Tensor]):
    """The activations of one forward pass by hook point name, detached from the autograd graph.

    A hook point that fires more than once in the pass (activation checkpointing's recomputation) keeps its
    last activation."""

    def __init__(self, activations: dict[str, Tensor], model: TransformerModel):
        self.activations = activations
        self.config: ModelConfig = model.config
        self._stacks = {spec.name: (stack_prefix(model, spec.name), spec) for spec in model.structure.stacks}

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.activations:
            check_name(name, self.activations, "this cache")  # it kept only the names run_with_cache was given
        return self.activations[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)

    def __repr__(self) -> str:
        first = ", ".join(list(self)[:4]) + (", ..." if len(self) > 4 else "")
        return f"ActivationCache({len(self)} activations: {first})"

    def layer_names(self, name: str, role: str | None = None) -> list[str]:
        """The full names of ``name`` (a name inside a block, ``"hook_resid_post"``, ``"attn.hook_pattern"``) in
        each layer of the stack ``role`` ("encoder", "decoder"; None in a model with one stack)."""
        prefix, spec = self._stack(role)
        return [f"{prefix}blocks.{index}.{name}" for index in range(spec.n_layers)]

    def stack(self, name: str, role: str | None = None) -> Tensor:
        """Every layer's ``name`` of the stack ``role`` in one tensor: (L, ...), e.g. (L, B, T, C) for
        ``"hook_resid_post"``, (L, B, H, T, S) for ``"attn.hook_pattern"``."""
        return torch.stack([self[full] for full in self.layer_names(name, role)])

    def residual_components(self, role: str | None = None) -> dict[str, Tensor]:
        """What wrote to the residual stream of the stack ``role``, by hook point name: the token embeddings,
        the position embeddings (where the model adds them), then each layer's attention output (and
        cross-attention output) and MLP output. Their sum is the stream after the last layer,
        ``blocks.{L-1}.hook_resid_post`` (in eval mode: dropout would drop parts of each).

        Raises:
            TrilogyError: a post-norm model (its stream is normalised after each add, so it is no sum), one whose
                embeddings are normalised or carry token types (BERT), or a cache without these names.
        """
        config = self.config
        if config.norm_position == "post" or config.embedding_norm or config.type_vocab_size:
            raise TrilogyError("the residual stream is a sum of its parts in pre-norm models whose embeddings are "
                               "tokens plus positions; this one normalises it (post-norm or an embedding norm) or "
                               "adds token types")
        prefix, spec = self._stack(role)
        names = [f"{prefix}hook_embed"]
        if config.position in ("learned", "sinusoidal"):
            names.append(f"{prefix}hook_pos_embed")
        branches = ("attn_out", "cross_attn_out", "mlp_out") if spec.cross_attention else ("attn_out", "mlp_out")
        names += [f"{prefix}blocks.{layer}.hook_{branch}" for layer in range(spec.n_layers) for branch in branches]
        missing = [name for name in names if name not in self.activations]
        if missing:
            raise TrilogyError(f"the cache lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: run "
                               "run_with_cache with names=None, or with these names")
        return {name: self.activations[name] for name in names}

    def _stack(self, role: str | None) -> tuple[str, StackSpec]:
        """The names' prefix and the spec of the stack ``role`` (None: the only one)."""
        if role is None and len(self._stacks) == 1:
            return next(iter(self._stacks.values()))
        if role not in self._stacks:
            raise TrilogyError(f"this model's stacks are {', '.join(map(repr, self._stacks))}; name one "
                               f"(got {role!r})")
        return self._stacks[role]


def run_with_cache(model: TransformerModel, *inputs: Any, names: Names = None, **options: Any
                   ) -> tuple[ModelOutput, ActivationCache]:
    """``model.run(*inputs, **options)``, keeping the activations of the hook points ``names`` (None: all of
    them). Attention scores and weights are computed on the explicit path only when asked for (SDPA otherwise).

    Returns:
        the run's ``ModelOutput`` and the ``ActivationCache``.
    """
    points = hook_points(model)
    if names is None:
        wanted = list(points)
    elif callable(names):
        wanted = [name for name in points if names(name)]
    else:
        wanted = list(names)
    activations: dict[str, Tensor] = {}

    def keep(activation: Tensor, name: str) -> None:
        activations[name] = activation.detach()

    with hooks(model, [(name, keep) for name in wanted]):
        output = model.run(*inputs, **options)
    return output, ActivationCache(activations, model)
