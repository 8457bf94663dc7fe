"""Fully sharded data parallel (PyTorch's FSDP2, ``fully_shard``): each rank holds 1/world of the parameters,
gradients and optimizer state, and gathers a layer's parameters only while that layer runs.

Checkpoints stay ordinary: the weights and optimizer state are gathered into full tensors for saving (so a
sharded run exports a normal checkpoint folder) and scattered back when a run resumes, on any number of ranks.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
from torch.optim import Optimizer

from ..blocks.layer import TransformerLayer

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(model: nn.Module) -> nn.Module:
    """Shard every transformer layer, then the rest (embeddings, heads, norms) at the root. ``run`` is
    registered as a forward method so that calling it gathers the root's parameters as ``forward`` does."""
    for module in model.modules():
        if isinstance(module, TransformerLayer):
            fully_shard(module)
    fully_shard(model)
    register_fsdp_forward_method(model, "run")
    return model


def full_weights(model: nn.Module) -> dict:
    """The whole state dict as ordinary CPU tensors on rank 0, empty elsewhere (a collective)."""
    return get_model_state_dict(model, options=FULL)


def full_optimizer_state(model: nn.Module, optimizer: Optimizer) -> dict:
    """The optimizer state gathered into full tensors keyed by parameter name, on rank 0 (a collective)."""
    model.reshard()  # a forward without backward (evaluation) leaves the root's parameters gathered
    return get_optimizer_state_dict(model, optimizer, options=FULL)


def load_full_optimizer_state(model: nn.Module, optimizer: Optimizer, state: dict) -> None:
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def unsharded_copy(model: nn.Module) -> nn.Module | None:
    """An ordinary (unsharded) copy of a sharded trilogy model, with its tokenization, for saving a normal
    checkpoint folder. A collective: call on every rank; rank 0 gets the copy, the others None."""
    from ..models import build_model

    weights = full_weights(model)  # gathered on rank 0 only
    if not weights:
        return None
    copy = build_model(model.config, tokenization=model.tokenization)
    copy.load_state_dict(weights)
    return copy
