"""Writing the weights as transformers does: one model.safetensors, or shards of at most ``max_shard_size``
(``model-00001-of-00003.safetensors``, ...) with the ``model.safetensors.index.json`` that names the shard of
each tensor. Tensors are written one at a time (``safetensors_file``), in the order given.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from ..errors import TrilogyError
from .files import SAFETENSORS, SAFETENSORS_INDEX, write_json
from .safetensors_file import write_safetensors

UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
METADATA = {"format": "pt"}  # transformers checks the header says the tensors are PyTorch's


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string like "5GB" (10**9 bytes each) or "500MiB" (2**20 each), as transformers
    reads ``max_shard_size``."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", str(size).upper())
    if match is None or float(match[1]) <= 0:
        raise TrilogyError(f"max_shard_size must be a positive number of bytes or a size like '5GB' or '500MiB', "
                         f"got {size!r}")
    return int(float(match[1]) * UNITS[match[2]])


def split_into_shards(tensors: dict[str, Tensor], max_bytes: int) -> list[list[str]]:
    """Names in order, cut into groups of at most ``max_bytes``; a tensor larger than that gets its own."""
    shards: list[list[str]] = [[]]
    filled = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and filled + nbytes > max_bytes:
            shards.append([])
            filled = 0
        shards[-1].append(name)
        filled += nbytes
    return shards


def remove_old_weights(folder: Path) -> None:
    """Delete the safetensors weights an earlier save left in ``folder``; a stale model.safetensors would be
    read instead of new shards."""
    for file in folder.iterdir():
        if file.name in (SAFETENSORS, SAFETENSORS_INDEX) or SHARD_NAME.fullmatch(file.name):
            file.unlink()


def write_weights(tensors: dict[str, Tensor], folder: Path, max_shard_size: int | str = "5GB") -> list[Path]:
    """Write ``tensors`` (by checkpoint name) into ``folder``, sharded when they exceed ``max_shard_size``.
    Returns the files written: model.safetensors, or the shards and the index."""
    shards = split_into_shards(tensors, parse_size(max_shard_size))
    remove_old_weights(folder)
    if len(shards) == 1:
        write_safetensors(tensors, folder / SAFETENSORS, METADATA)
        return [folder / SAFETENSORS]
    files = [folder / f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    for names, file in zip(shards, files, strict=True):
        write_safetensors({name: tensors[name] for name in names}, file, METADATA)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    write_json({"metadata": {"total_size": total},
                "weight_map": {name: file.name for names, file in zip(shards, files, strict=True) for name in names}},
               folder / SAFETENSORS_INDEX)
    return [*files, folder / SAFETENSORS_INDEX]
