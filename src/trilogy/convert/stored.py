"""The tensors a checkpoint folder stores, known by name, shape and dtype before any is read, and read one at a
time: model.safetensors, sharded safetensors with their index, or pytorch_model.bin (optionally sharded).

A ``.bin`` is read with ``torch.load(weights_only=True)``: its unpickler only rebuilds tensors and plain
containers, so a file holding anything else is refused before any of its code can run. Unlike safetensors, a
``.bin`` cannot be read tensor by tensor; it is read whole, so loading one holds it beside the model.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from ..errors import CheckpointError
from .files import read_json, weights_file
from .safetensors_file import SafetensorsFile


class TensorReader(Protocol):
    """What reads a stored tensor by name: a SafetensorsFile, or a GGUF file's tensors
    (``gguf_checkpoint.GGUFTensors``: dequantised to float32, and filling a parameter itself with ``copy_into``)."""

    def read(self, name: str) -> Tensor: ...


@dataclass
class StoredWeights:
    """Name -> shape and dtype of every stored tensor, and where to read it.

    ``file`` is the weights file, or the index of a sharded one; ``readers`` maps each name to the file that
    holds it (a SafetensorsFile, another TensorReader, or the dict of a .bin file's tensors)."""

    file: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    readers: dict[str, TensorReader | dict[str, Tensor]]

    def read(self, name: str) -> Tensor:
        """The tensor ``name`` as stored (dtype included), on the CPU; possibly a view of the file, to be
        copied, not kept."""
        reader = self.readers[name]
        return reader[name] if isinstance(reader, dict) else reader.read(name)

    def copy_into(self, name: str, out: Tensor) -> None:
        """Copy the tensor ``name`` into ``out`` (its shape; any dtype, device, strides), read straight into it
        when it is contiguous, on the CPU and of the stored dtype, as most tensors of a model are."""
        reader = self.readers[name]
        fill = getattr(reader, "copy_into", None)
        if fill is not None:  # a reader that fills any tensor itself (a GGUF file's, dequantising a few rows at a time)
            fill(name, out)
            return
        direct = out.is_contiguous() and out.device.type == "cpu" and out.dtype == self.dtypes[name]
        if direct and isinstance(reader, SafetensorsFile):
            reader.read_into(name, out)
        else:
            out.copy_(self.read(name))


def open_weights(folder: Path) -> StoredWeights:
    """The stored tensors of a checkpoint folder, from the safetensors headers (or a .bin read whole)."""
    file = weights_file(folder)
    parts = _shards(file) if file.name.endswith(".index.json") else [file]
    shapes, dtypes, readers = {}, {}, {}
    for part in parts:
        reader = SafetensorsFile(part) if part.suffix == ".safetensors" else _read_bin(part)
        entries = reader.tensors if isinstance(reader, SafetensorsFile) else reader
        for name, entry in entries.items():
            shapes[name], dtypes[name], readers[name] = tuple(entry.shape), entry.dtype, reader
    if file.name.endswith(".index.json"):
        weight_map = read_json(file)["weight_map"]
        absent = sorted(set(weight_map) - set(shapes))
        if absent:
            raise CheckpointError(f"{file} lists tensors its shards do not hold: {', '.join(absent[:10])}")
    return StoredWeights(file, shapes, dtypes, readers)


def _shards(index_file: Path) -> list[Path]:
    weight_map = read_json(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_file} has no 'weight_map' naming the shard of each tensor")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise CheckpointError(f"{index_file} names shard {shard!r}, which is not a file name in the folder")
        if not (index_file.parent / shard).is_file():
            raise CheckpointError(f"{index_file} names shard {shard}, which is missing")
    return [index_file.parent / shard for shard in shards]


def _read_bin(file: Path) -> dict[str, Tensor]:
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{file} was refused: it holds objects other than plain tensors, which could run code when "
            f"unpickled; nothing in it was executed ({first_line}). Convert it to safetensors with a tool "
            "you trust."
        ) from None
    except Exception as error:  # truncated zip archives, legacy formats, ...
        raise CheckpointError(f"{file} is truncated or corrupted and cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} must hold a dict of named tensors, found {type(data).__name__}")
    not_tensors = sorted(str(k) for k, v in data.items() if not isinstance(k, str) or not isinstance(v, Tensor))
    if not_tensors:
        raise CheckpointError(f"{file} holds entries that are not named tensors: {', '.join(not_tensors[:10])}")
    return data
