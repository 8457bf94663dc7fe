"""The GGUF format (llama.cpp's one-file checkpoints), read with the ``gguf`` package: the metadata as plain
values, and each tensor read from the file and dequantised on its own, with ``gguf.quants.dequantize``.

A file is a header (the metadata, then each tensor's name, GGML type, dimensions and offset), then the tensors'
bytes. ``GGUFReader`` maps the whole file to parse the header; that map is dropped once the header is read, and
a tensor is then read a few rows at a time into one buffer, dequantised and copied into its parameter, so a load
never holds more of the file than those rows (a map held over the whole file would count every page read as the
process's memory until the end of the load).

GGUF lists a tensor's dimensions fastest first (``ne0`` = the row length); here shapes are in torch's order, rows
first, so a linear layer's weight is (out, in) as in ``nn.Linear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError

CHUNK_VALUES = 2**20  # values dequantised at once: 4 MB as float32 (a few times that in dequantize's temporaries)


def import_gguf():
    """The ``gguf`` package, or a one-line error saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise CheckpointError("reading GGUF files needs the gguf package: pip install gguf "
                              "(or pip install 'trilogy[gguf]')") from None
    return gguf


@dataclass(frozen=True)
class GGUFTensor:
    """Where one tensor lies in the file and how it is stored."""

    kind: Any  # a gguf.GGMLQuantizationType: F32, F16, Q8_0, Q4_K, ...
    shape: tuple[int, ...]  # torch's order, rows first
    begin: int  # absolute byte offset
    nbytes: int

    @property
    def kind_name(self) -> str:
        return self.kind.name


class GGUFFile:
    """The metadata and tensor table of a GGUF file, and its tensors on request.

    Raises:
        CheckpointError: not a GGUF file the gguf package can parse (bad magic, unknown version or tensor type,
            truncated header).
    """

    def __init__(self, file: Path):
        gguf = import_gguf()
        self.file = file
        try:
            reader = gguf.GGUFReader(file)
            self.metadata: dict[str, Any] = {name: field.contents() for name, field in reader.fields.items()
                                             if not name.startswith("GGUF.")}
            self.tensors = {t.name: GGUFTensor(t.tensor_type, tuple(int(n) for n in reversed(t.shape.tolist())),
                                               int(t.data_offset), int(t.n_bytes)) for t in reader.tensors}
        except Exception as error:  # the reader raises ValueError, KeyError, IndexError, ... on a bad file
            raise CheckpointError(f"{file} cannot be read as a GGUF file ({type(error).__name__}: "
                                  f"{_first_line(error)})") from None
        del reader  # its map of the whole file goes with it

    def unreadable(self) -> dict[str, list[str]]:
        """GGML type name -> the tensors stored in a type the gguf package cannot dequantise."""
        refused: dict[str, list[str]] = {}
        for name, tensor in self.tensors.items():
            if not dequantizable(tensor.kind):
                refused.setdefault(tensor.kind_name, []).append(name)
        return refused

    def read(self, name: str) -> Tensor:
        """The tensor ``name`` as float32 values in torch's dimension order: quantised blocks dequantised by
        ``gguf.quants.dequantize``, F16 and BF16 widened (exactly)."""
        out = torch.empty(self.tensors[name].shape)
        self.copy_into(name, out)
        return out

    def copy_into(self, name: str, out: Tensor) -> None:
        """Copy the tensor ``name`` into ``out`` (its shape; any dtype and device) a few rows at a time, each read
        into one buffer and dequantised on its own (a row is whole blocks), so that a large tensor (an embedding)
        is never held whole as float32 beside ``out``, nor its bytes."""
        gguf = import_gguf()
        if not out.is_contiguous():
            out.copy_(self.read(name))
            return
        tensor = self.tensors[name]
        row_bytes = gguf.quants.quant_shape_to_byte_shape(tensor.shape[-1:], tensor.kind)[0]
        target = out.view(-1, tensor.shape[-1])  # (rows, cols)
        step = max(1, CHUNK_VALUES // tensor.shape[-1])
        buffer = np.empty(min(step, target.size(0)) * row_bytes, dtype=np.uint8)
        with open(self.file, "rb") as reader:
            reader.seek(tensor.begin)
            for start in range(0, target.size(0), step):
                rows = min(step, target.size(0) - start)
                raw = buffer[:rows * row_bytes]
                if reader.readinto(memoryview(raw)) != raw.size:
                    raise CheckpointError(f"{self.file} is truncated: {name} needs {tensor.nbytes} bytes at "
                                          f"{tensor.begin}, the file ends first")
                values = gguf.quants.dequantize(raw.reshape(rows, row_bytes), tensor.kind)  # (rows, cols)
                target[start:start + rows].copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))


@cache
def dequantizable(kind) -> bool:
    """Whether the installed gguf package dequantises GGML type ``kind``, tried on one block of zeros."""
    gguf = import_gguf()
    _, size = gguf.GGML_QUANT_SIZES[kind]  # (values, bytes) per block
    try:
        gguf.quants.dequantize(np.zeros((1, size), dtype=np.uint8), kind)
    except NotImplementedError:
        return False
    return True


def torch_dtype(kind) -> torch.dtype:
    """The dtype a GGML type's values have: F16 and BF16 theirs, every other type float32 (what quantised blocks
    dequantise to); ``from_pretrained(dtype="auto")`` reads it."""
    return {"F16": torch.float16, "BF16": torch.bfloat16}.get(kind.name, torch.float32)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
