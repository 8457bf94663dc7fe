"""The safetensors format, read and written one tensor at a time, so that neither loading nor saving a model
ever holds a second copy of it.

A file is an 8-byte little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets":
[begin, end]}, "__metadata__": {...}}``, then the tensors' bytes (offsets count from the end of the header).
A tensor is read straight into the memory it will live in when it needs no change (``read_into``), and
otherwise mapped on its own (``read``): a view of the file that the loader copies into place, cast and
reordered in that one copy; the map goes when the view does. A map held over the whole file would count every
page read as the process's resident memory until the end of the load, doubling its peak.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError, TrilogyError

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
ALIGNMENT = 8  # the header is padded with spaces to a multiple of this, as the safetensors library does


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor lies in the file: its dtype, shape, and absolute byte range."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


class SafetensorsFile:
    """The header of a safetensors file, checked against the file's size, and its tensors on request."""

    def __init__(self, file: Path):
        self.file = file
        try:
            self.tensors = _read_header(file)
        except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
            raise CheckpointError(f"{file} is truncated or corrupted and cannot be read as safetensors "
                                  f"({error})") from None

    def read(self, name: str) -> Tensor:
        """The tensor ``name``, in the file's dtype: a view of the file (CPU), mapped while the view lives.
        Copy it to keep it: the file may change under a map."""
        stored = self.tensors[name]
        if stored.end == stored.begin:
            return torch.empty(stored.shape, dtype=stored.dtype)
        start = stored.begin - stored.begin % mmap.ALLOCATIONGRANULARITY  # maps start at a page boundary
        with open(self.file, "rb") as reader:
            mapped = mmap.mmap(reader.fileno(), stored.end - start, offset=start, access=mmap.ACCESS_COPY)
        return torch.frombuffer(mapped, dtype=stored.dtype, count=prod(stored.shape),
                                offset=stored.begin - start).reshape(stored.shape)


    def read_into(self, name: str, out: Tensor) -> None:
        """Read the tensor ``name`` into ``out``: contiguous, on the CPU, of its shape and stored dtype."""
        stored = self.tensors[name]
        with open(self.file, "rb") as reader:
            reader.seek(stored.begin)
            count = reader.readinto(memoryview(out.reshape(-1).view(torch.uint8).numpy()))
        if count != stored.end - stored.begin:
            raise CheckpointError(f"{self.file} is truncated or corrupted: {name} needs "
                                  f"{stored.end - stored.begin} bytes, {count} could be read")


def _read_header(file: Path) -> dict[str, StoredTensor]:
    size = file.stat().st_size
    with open(file, "rb") as reader:
        (length,) = struct.unpack("<Q", reader.read(8))
        if length > size - 8:
            raise TrilogyError(f"the header claims {length} bytes, the file holds {size}")
        header = json.loads(reader.read(length))
    if not isinstance(header, dict):
        raise TrilogyError("the header is not a JSON object")
    start = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in DTYPES:
            raise TrilogyError(f"{name} has dtype {entry['dtype']!r}, not one of {', '.join(DTYPES)}")
        dtype, shape = DTYPES[entry["dtype"]], tuple(int(n) for n in entry["shape"])
        begin, end = (int(n) for n in entry["data_offsets"])
        if end - begin != prod(shape) * dtype.itemsize or begin < 0:
            raise TrilogyError(f"{name}: offsets {begin}..{end} do not hold shape {list(shape)} of {dtype}")
        if start + end > size:
            raise TrilogyError(f"{name} ends at byte {start + end}, past the end of the file ({size} bytes)")
        tensors[name] = StoredTensor(dtype, shape, start + begin, start + end)
    return tensors


def write_safetensors(tensors: dict[str, Tensor], file: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (views are fine: tied, sliced, transposed, on any device) one at a time: each is copied
    to contiguous CPU memory only while its bytes are written.

    Args:
        metadata: the header's ``__metadata__`` (transformers wants ``{"format": "pt"}``).
    """
    header: dict[str, object] = {"__metadata__": metadata or {}}
    offset = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % ALIGNMENT)
    with open(file, "wb") as writer:
        writer.write(struct.pack("<Q", len(encoded)))
        writer.write(encoded)
        for tensor in tensors.values():
            writer.write(bytes_of(tensor))


def bytes_of(tensor: Tensor):
    """The bytes of ``tensor`` in C order, as a numpy uint8 array: a view of the tensor when it is a contiguous
    CPU one, else of a copy that lives as long as the array."""
    data = tensor.detach().to("cpu").contiguous()
    return data.reshape(-1).view(torch.uint8).numpy()  # (numel * itemsize,)
