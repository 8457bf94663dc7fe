"""A checkpoint by folder or by name: ``"runs/gpt"`` is a folder, ``"OWNER/NAME"`` a model of the Hugging Face
Hub, found in its cache (``HF_HOME``, ``HF_HUB_CACHE``: ``models--OWNER--NAME/snapshots/HASH/``) through
``huggingface_hub``, or downloaded into it when online and not cached. ``HF_HUB_OFFLINE=1`` keeps it to the
cache. Only the files the loader reads are fetched: config.json, the safetensors weights (a .bin when the
model has none), and the tokenizer and chat-template files.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CheckpointNotFound, TrilogyError
from .files import checkpoint_folder, weights_file

#: what ``from_pretrained`` reads, as transformers fetches it for a model with safetensors weights
NEEDED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "chat_template.jinja", "chat_template.json"]
SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
BIN_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]
REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # "gpt2" or "OWNER/NAME"


def resolve(path_or_name: str | Path, revision: str | None = None) -> Path:
    """The checkpoint folder of a path, or of a Hub model name (cached, or downloaded when online).

    Args:
        revision: a branch, tag or commit hash of a Hub model (default: "main"); not for folders.
    Raises:
        FileNotFoundError: neither a folder nor a model the cache holds (or, online, the Hub has); the
            message says where it looked.
    """
    path = Path(path_or_name)
    if path.exists():
        if revision is not None:
            raise TrilogyError(f"revision={revision!r} selects a version of a Hugging Face model, but {path} is a "
                             "folder")
        return checkpoint_folder(path)
    if isinstance(path_or_name, Path) or not REPO_ID.fullmatch(path_or_name) or path_or_name.startswith("."):
        return checkpoint_folder(path)  # raises: no such folder
    return _from_hub(path_or_name, revision)


def _from_hub(name: str, revision: str | None) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(name, revision=revision, allow_patterns=NEEDED + SAFETENSORS_FILES))
        if not any((folder / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
            folder = Path(snapshot_download(name, revision=revision, allow_patterns=NEEDED + BIN_FILES))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        version = f" at revision {revision!r}" if revision else ""
        where = f"the Hugging Face cache {constants.HF_HUB_CACHE}"
        why = ("offline (HF_HUB_OFFLINE is set), so the Hub was not asked" if constants.HF_HUB_OFFLINE
               else f"looking it up on the Hub failed: {_first_line(error)}")
        raise CheckpointNotFound(f"{name!r} is neither a folder nor a model{version} in {where}; {why}") from None
    weights_file(folder)  # a snapshot without weights is refused here, naming what it holds
    return folder


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
