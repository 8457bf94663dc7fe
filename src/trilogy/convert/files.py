"""Reading and writing the files of a checkpoint folder: config.json, the weights (model.safetensors, sharded
safetensors with their index, pytorch_model.bin, optionally sharded too) and tokenizer.json.

A ``.bin`` is read with ``torch.load(weights_only=True)``: its unpickler only rebuilds tensors and plain
containers, so a file holding anything else is refused before any of its code can run.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import CheckpointError

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, BIN, BIN_INDEX)  # in order of preference
CONFIG, TOKENIZER, TOKENIZER_CONFIG = "config.json", "tokenizer.json", "tokenizer_config.json"
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def checkpoint_folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"no checkpoint folder at {folder}")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; a checkpoint is a folder holding config.json and the "
                              "weights")
    return folder


def read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} must hold a JSON object, found {type(data).__name__}")
    return data


def write_json(data: dict[str, Any], file: Path) -> None:
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def weights_file(folder: Path) -> Path:
    """The weights file (or shard index) of a checkpoint folder."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise CheckpointError(f"{folder} holds no weights: looked for {', '.join(WEIGHT_FILES)}; found {present}")


def _read_safetensors(file: Path) -> dict[str, Tensor]:
    try:
        return load_file(file)
    except Exception as error:  # safetensors raises its own SafetensorError, OSError, ...
        raise CheckpointError(f"{file} is truncated or corrupted and cannot be read as safetensors "
                              f"({error})") from None


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


def _read_one(file: Path) -> dict[str, Tensor]:
    return _read_safetensors(file) if file.suffix == ".safetensors" else _read_bin(file)


def _read_sharded(index_file: Path) -> dict[str, Tensor]:
    weight_map = read_json(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_file} has no 'weight_map' naming the shard of each tensor")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise CheckpointError(f"{index_file} names shard {shard!r}, which is not a file name in the folder")
        if not (index_file.parent / shard).is_file():
            raise CheckpointError(f"{index_file} names shard {shard}, which is missing")
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        tensors.update(_read_one(index_file.parent / shard))
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise CheckpointError(f"{index_file} lists tensors its shards do not hold: {', '.join(absent[:10])}")
    return {name: tensors[name] for name in weight_map}


def read_tensors(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """All tensors of the checkpoint, by name, and the file (or index) they came from."""
    file = weights_file(folder)
    tensors = _read_sharded(file) if file.name.endswith(".index.json") else _read_one(file)
    return tensors, file


def tensor_shapes(folder: Path) -> tuple[dict[str, tuple[tuple[int, ...], str]], Path]:
    """Name -> (shape, dtype) of every stored tensor; safetensors headers are read without loading the data."""
    file = weights_file(folder)
    files = [file]
    if file.name.endswith(".index.json"):
        files = [folder / name for name in sorted(set(read_json(file).get("weight_map", {}).values()))]
    shapes = {}
    for part in files:
        if part.suffix != ".safetensors":
            shapes.update({k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
                           for k, v in _read_one(part).items()})
            continue
        try:
            with safe_open(part, framework="pt") as reader:
                for key in reader.keys():
                    tensor_slice = reader.get_slice(key)
                    dtype = str(tensor_slice.get_dtype())
                    shapes[key] = (tuple(tensor_slice.get_shape()), _SAFETENSORS_DTYPES.get(dtype, dtype))
        except Exception as error:
            raise CheckpointError(f"{part} is truncated or corrupted ({error})") from None
    return shapes, file


def write_safetensors(tensors: dict[str, Tensor], file: Path) -> None:
    """Each tensor gets its own contiguous CPU storage: safetensors refuses shared (tied or sliced) tensors."""
    save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}, file,
              metadata={"format": "pt"})


def read_tokenizer(folder: Path):
    """The ``tokenizers.Tokenizer`` of tokenizer.json in the folder, or None when there is none."""
    file = folder / TOKENIZER
    if not file.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file))
    except Exception as error:
        raise CheckpointError(f"{file} cannot be read by the tokenizers library ({error})") from None


def write_tokenizer(tokenizer, folder: Path, special_ids: dict[str, int | None]) -> None:
    """tokenizer.json, plus the tokenizer_config.json that lets transformers' AutoTokenizer read it and know the
    special tokens (``special_ids`` like ``{"eos_token": 2}``)."""
    tokenizer.save(str(folder / TOKENIZER))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for name, token_id in special_ids.items():
        token = tokenizer.id_to_token(token_id) if token_id is not None else None
        if token is not None:
            settings[name] = token
    write_json(settings, folder / TOKENIZER_CONFIG)
