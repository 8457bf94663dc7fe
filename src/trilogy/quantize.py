"""A model in its form for decoding on CPU: ``trilogy.prepack`` (weights reordered for oneDNN, same dtype) and
``trilogy.quantize`` (weight-only int8 / int4). See ``blocks/inference_linear.py`` for the layers and kernels.

What ``quantize`` quantises, and why:
- every linear layer of the transformer stacks (attention's projections, the MLP), in the chosen format: they
  hold nearly all the bytes a decoding step reads;
- the LM head over the vocabulary, in the same format by default (as torchao's weight-only configs do): it is
  read whole at every step, a fifth of a 135M model's bytes, and torch's int8 kernel is slow on so tall a matrix
  (about 3x the int4 kernel's time on its 49152 x 576 head in ``benchmarks/decode.py``, 2-core AMD EPYC);
  ``head="int8"`` keeps more of the logits' precision under int4 stacks;
- the embeddings stay bfloat16: a step looks up one row per sequence, so their size costs memory, not time;
- task heads (classifiers, pooler, span) stay bfloat16: they are small and not read while decoding.
The rest of the model (norms, biases, the cache) becomes bfloat16: the kernels take bfloat16 activations.
The kernels are torch's own, not torchao's: the same CPU kernels without a second package whose releases must
match torch's.

``prepack`` reorders the same layers (the stacks' linear layers and the LM head) and keeps their dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .blocks.heads import LMHead, MLMHead
from .blocks.inference_linear import FORMATS, InferenceLinear, PackedLinear, QuantizedLinear
from .blocks.stack import TransformerStack
from .errors import TrilogyError
from .models import TransformerModel


def quantize(model: TransformerModel, format: str, group_size: int = 64, head: str | None = None
             ) -> TransformerModel:
    """Quantise ``model``'s weights in place for inference on CPU and return it (see the module docstring).

    Args:
        format: "int8" (one scale per output row) or "int4" (a scale and an offset per ``group_size`` inputs).
        group_size: int4's group: 32, 64, 128 ...; the layers' input width must be a multiple.
        head: the LM head's format, "int8" or "int4"; None: ``format``.
    Returns:
        the model, in eval mode, bfloat16 besides the quantised layers (``inference_form`` names the format).
    """
    head = format if head is None else head
    for name, value in (("format", format), ("head", head)):
        if value not in FORMATS:
            raise TrilogyError(f"quantize {name} must be one of {', '.join(FORMATS)}, got {value!r}")
    _check_convertible(model)
    model.to(torch.bfloat16)
    return _replace(model, lambda linear: QuantizedLinear(linear, format, group_size),
                    lambda linear: QuantizedLinear(linear, head, group_size))


def prepack(model: TransformerModel) -> TransformerModel:
    """Reorder ``model``'s linear layers (the stacks' and the LM head) into oneDNN's blocked layout in place,
    for inference on CPU, and return it: the same dtype and the same results up to rounding, with one-row
    products that stream the weights at the memory's rate where the BLAS's do not (``benchmarks/decode.py``)."""
    if not torch.backends.mkldnn.is_available():
        raise TrilogyError("prepack needs a torch built with oneDNN (mkldnn), which this one is not")
    _check_convertible(model)
    return _replace(model, PackedLinear, PackedLinear)


def inference_form(model: nn.Module) -> str | None:
    """How ``model``'s stacks are stored for CPU inference: "int8", "int4", "prepacked", or None (as trained)."""
    layer = next((layer for stack in model.modules() if isinstance(stack, TransformerStack)
                  for layer in stack.modules() if isinstance(layer, InferenceLinear)), None)
    if layer is None:
        return None
    return layer.format if isinstance(layer, QuantizedLinear) else "prepacked"


def _check_convertible(model: TransformerModel) -> None:
    if inference_form(model) is not None:
        raise TrilogyError(f"this model is already in a CPU inference form ({inference_form(model)})")
    devices = {t.device.type for t in [*model.parameters(), *model.buffers()]}
    if devices != {"cpu"}:
        raise TrilogyError(f"the inference layers run on CPU kernels; this model is on {', '.join(sorted(devices))}")


def _replace(model: TransformerModel, stack_layer: Callable[[nn.Linear], nn.Module],
             head_layer: Callable[[nn.Linear], nn.Module]) -> TransformerModel:
    """Every ``nn.Linear`` of the stacks made ``stack_layer(linear)``, the LM head's ``head_layer(linear)``."""
    for stack in [module for module in model.modules() if isinstance(module, TransformerStack)]:
        _replace_linears(stack, stack_layer)
    head = model.output_head()
    if isinstance(head, (LMHead, MLMHead)):
        name = next(name for name, child in head.named_children() if child is head.projection)
        setattr(head, name, head_layer(head.projection))
    return model.eval()


def _replace_linears(module: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> None:
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, make(child))
        else:
            _replace_linears(child, make)
