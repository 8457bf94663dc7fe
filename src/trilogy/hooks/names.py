"""The names of a model's hook points: TransformerLens's (``blocks.0.attn.hook_pattern``), each prefixed by its
stack's role in a model with two stacks (``encoder.blocks.0.hook_resid_post``,
``decoder.blocks.0.cross_attn.hook_pattern``). docs/inside.md has the table.

A name is the hook point's path in its stack (the module holding it, then its attribute) with TransformerLens's
words: ``layers.{i}`` -> ``blocks.{i}``, ``self_attn`` -> ``attn``; the stack's input hooks (``embedding_hooks``)
sit at its top, and its final norm's output (``hook_final_norm``) is ``ln_final.hook_normalized``.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from ..blocks.hook_point import HookPoint
from ..blocks.stack import TransformerStack
from ..errors import TrilogyError
from ..models import TransformerModel


def hook_points(model: TransformerModel) -> dict[str, HookPoint]:
    """Every hook point of ``model`` by name, stack by stack in the order a forward pass runs them."""
    stacks = model.stacks()
    return {stack_prefix(model, role) + name: point
            for role, stack in stacks.items() for name, point in _stack_points(stack)}


def stack_prefix(model: TransformerModel, role: str | None = None) -> str:
    """What the names of the stack ``role`` ("encoder", "decoder") start with: nothing in a model with one stack
    (``role`` may then be None), ``"{role}."`` in an encoder-decoder."""
    roles = [spec.name for spec in model.structure.stacks]
    if len(roles) == 1 and role in (None, roles[0]):
        return ""
    if role not in roles:
        raise TrilogyError(f"this model's stacks are {', '.join(map(repr, roles))}; name one (got {role!r})")
    return f"{role}."


def _stack_points(stack: TransformerStack) -> Iterator[tuple[str, HookPoint]]:
    yield "hook_embed", stack.embedding_hooks.hook_embed
    if stack.embedding_hooks.hook_pos_embed is not None:
        yield "hook_pos_embed", stack.embedding_hooks.hook_pos_embed
    for index, layer in enumerate(stack.layers):
        yield from _named_points(layer, f"blocks.{index}.")
    if stack.hook_final_norm is not None:
        yield "ln_final.hook_normalized", stack.hook_final_norm


def _named_points(module: nn.Module, prefix: str) -> Iterator[tuple[str, HookPoint]]:
    """The hook points of ``module`` and its submodules: their attributes (hook points are no submodules)."""
    for path, submodule in module.named_modules():
        for attribute, point in vars(submodule).items():
            if isinstance(point, HookPoint):
                name = f"{path}.{attribute}" if path else attribute
                yield prefix + name.replace("self_attn.", "attn."), point
