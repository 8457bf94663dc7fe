"""Loading at the file's cost: the model is built on the meta device (shapes, no memory), checked against the
file, then each parameter is read from the file, converted (fused, transposed), cast and moved to its device
on its own, so the peak is the loaded model plus one tensor in flight. Nothing the file provides is randomly
initialised; buffers the file does not hold (rotary frequencies, sinusoidal tables) are computed.
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import TrilogyError
from ..models import Tokenization, TransformerModel, build_model
from .mapping import Rule
from .stored import StoredWeights

DTYPE_CHOICES = "None (float32), a floating torch.dtype, or 'auto' (the file's)"


#: ``torch.nn.init`` functions that module constructors (and ``init_weights``) call
INIT_FUNCTIONS = ("normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
                  "trunc_normal_", "zeros_", "ones_", "constant_")


def build_on_meta(config: ModelConfig, tokenization: Tokenization | None = None,
                  checkpoint_activations: bool = False) -> TransformerModel:
    """The model of ``config`` with every parameter and buffer on the meta device: no memory, no init cost.

    The ``torch.nn.init`` functions do nothing meanwhile (as in transformers' ``no_init_weights``): meta tensors
    have no values to initialise, and the meta kernel of ``normal_`` alone would import torch._dynamo (over a
    second, the first time)."""
    saved = {name: getattr(nn.init, name) for name in INIT_FUNCTIONS}
    try:
        for name in INIT_FUNCTIONS:
            setattr(nn.init, name, _unchanged)
        with torch.device("meta"):
            return build_model(config, tokenization=tokenization, checkpoint_activations=checkpoint_activations)
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _unchanged(tensor: Tensor, *args, **kwargs) -> Tensor:
    return tensor


def resolve_dtype(dtype: torch.dtype | str | None, config_dtype: str | None,
                  stored_dtypes: dict[str, torch.dtype]) -> torch.dtype:
    """The parameters' dtype: float32 by default; for "auto", as transformers does, config.json's ``dtype``
    (or ``torch_dtype``), else that of the first floating-point tensor in the file."""
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        named = getattr(torch, config_dtype, None) if isinstance(config_dtype, str) else None
        if isinstance(named, torch.dtype) and named.is_floating_point:
            return named
        return next((d for d in stored_dtypes.values() if d.is_floating_point), torch.float32)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    raise TrilogyError(f"dtype must be {DTYPE_CHOICES}; got {dtype!r}")


def tied_keys(model: nn.Module) -> dict[str, str]:
    """Parameter names that are the same tensor as an earlier name (a tied head) -> that earlier name."""
    first_name: dict[int, str] = {}
    tied = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first_name:
            tied[name] = first_name[id(tensor)]
        else:
            first_name[id(tensor)] = name
    return tied


def _set_parameter(model: nn.Module, name: str, parameter: nn.Parameter) -> None:
    owner, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(owner), leaf, parameter)


def materialize(model: TransformerModel, rules: list[Rule], stored: StoredWeights, names: dict[str, str],
                dtype: torch.dtype, device: torch.device) -> None:
    """Replace the meta parameters of ``model`` by the file's tensors, one rule at a time, and compute its
    buffers on ``device`` (floating ones in ``dtype``, as ``model.to(dtype)`` would give them).

    Args:
        rules: one per distinct parameter (tied copies excluded; they are re-tied here).
        names: checkpoint names as the rules have them -> as stored.
    """
    tied = tied_keys(model)
    for rule in rules:
        meta = model.get_parameter(rule.ours)
        tensor = torch.empty(meta.shape, dtype=dtype, device=device)
        if rule.direct:
            stored.copy_into(names[rule.theirs[0]], tensor)
        else:
            tensor.copy_(rule.to_ours([stored.read(names[name]) for name in rule.theirs], model.config))
        _set_parameter(model, rule.ours, nn.Parameter(tensor, requires_grad=meta.requires_grad))
    for name, source in tied.items():
        _set_parameter(model, name, model.get_parameter(source))
    for module in model.modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers()
            for name, buffer in module.named_buffers(recurse=False):
                setattr(module, name, buffer.to(device=device, dtype=dtype if buffer.is_floating_point() else None))
    left = [name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:  # a parameter with no rule or a buffer without reset_buffers: a gap in trilogy, not in the file
        raise RuntimeError(f"still on the meta device after loading: {', '.join(left)}")
