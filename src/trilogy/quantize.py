"""``trilogy.quantize``: weight-only int8 / int4 for decoding on CPU.

What is quantised, and why:
- every linear layer of the transformer stacks (attention's projections, the MLP), in the chosen format: they
  hold nearly all the bytes a decoding step reads;
- the LM head over the vocabulary, in int8 in both formats: it is read whole at every step (a fifth of a
  135M model's bytes), and its errors go straight into the logits, which int4 moves more than int8;
- the embeddings stay bfloat16: a step looks up one row per sequence, so their size costs memory, not time;
- task heads (classifiers, pooler, span) stay bfloat16: they are small and not read while decoding.
The rest of the model (norms, biases, the cache) becomes bfloat16: the kernels take bfloat16 activations.

The kernels are torch's own (``blocks/quantized_linear.py``), not torchao's: the same CPU kernels without a
second package whose releases must match torch's.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks.heads import LMHead, MLMHead
from .blocks.quantized_linear import FORMATS, QuantizedLinear
from .blocks.stack import TransformerStack
from .errors import TrilogyError
from .models import TransformerModel

#: the head over the vocabulary is int8 whatever the stacks' format (see the module docstring)
HEAD_FORMAT = "int8"


def quantize(model: TransformerModel, format: str, group_size: int = 64) -> TransformerModel:
    """Quantise ``model``'s weights in place for inference on CPU and return it (see the module docstring).

    Args:
        format: "int8" (one scale per output row) or "int4" (a scale and an offset per ``group_size`` inputs).
        group_size: int4's group: 32, 64, 128 ...; the layers' input width must be a multiple.
    Returns:
        the model, in eval mode, bfloat16 besides the quantised layers (``quantized_format`` names the format).
    """
    if format not in FORMATS:
        raise TrilogyError(f"quantize format must be one of {', '.join(FORMATS)}, got {format!r}")
    if quantized_format(model) is not None:
        raise TrilogyError(f"this model is already quantised ({quantized_format(model)})")
    devices = {t.device.type for t in [*model.parameters(), *model.buffers()]}
    if devices != {"cpu"}:
        raise TrilogyError(f"quantised layers run on CPU kernels; this model is on {', '.join(sorted(devices))}")
    model.to(torch.bfloat16).eval()
    for stack in [module for module in model.modules() if isinstance(module, TransformerStack)]:
        _replace_linears(stack, format, group_size)
    head = model.output_head()
    if isinstance(head, (LMHead, MLMHead)):
        name = next(name for name, child in head.named_children() if child is head.projection)
        setattr(head, name, QuantizedLinear(head.projection, HEAD_FORMAT))
    return model


def quantized_format(model: nn.Module) -> str | None:
    """The format of ``model``'s stacks ("int8", "int4"), or None when it is not quantised."""
    return next((layer.format for stack in model.modules() if isinstance(stack, TransformerStack)
                 for layer in stack.modules() if isinstance(layer, QuantizedLinear)), None)


def _replace_linears(module: nn.Module, format: str, group_size: int) -> None:
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, QuantizedLinear(child, format, group_size))
        else:
            _replace_linears(child, format, group_size)
