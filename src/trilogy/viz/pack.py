"""Tensors packed for the page: base64 of raw bytes instead of JSON lists of floats, so a 512-token view of a
BERT-base-sized model stays a file a browser opens. The page decodes each with ``atob`` into a typed array."""

from __future__ import annotations

import base64

import numpy as np
import torch
from torch import Tensor

#: attention weights lie in [0, 1]; one byte each is 1/255 resolution, finer than any colour on screen
WEIGHT_LEVELS = 255


def quantised(weights: Tensor) -> str:
    """Weights in [0, 1] as one byte each (``round(w * 255)``), row-major, base64."""
    levels = (weights.float().clamp(0, 1) * WEIGHT_LEVELS).round().to(torch.uint8)
    return base64.b64encode(levels.contiguous().numpy().tobytes()).decode("ascii")


def floats(values: Tensor) -> str:
    """float32 little-endian, row-major, base64 (-inf stays -inf)."""
    return base64.b64encode(values.float().contiguous().numpy().astype("<f4").tobytes()).decode("ascii")


def bits(values: Tensor) -> str:
    """Eight values per byte, first value in the highest bit (``numpy.packbits``), row-major, base64."""
    return base64.b64encode(np.packbits(values.bool().flatten().numpy()).tobytes()).decode("ascii")
