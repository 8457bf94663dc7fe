"""Where trilogy keeps data it builds or downloads once: ``$TRILOGY_CACHE``, else ``$XDG_CACHE_HOME/trilogy``,
else ``~/.cache/trilogy``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    root = os.environ.get("TRILOGY_CACHE")
    path = Path(root) if root is not None else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trilogy"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file of its own and a rename, so that processes filling the cache at
    the same time (ranks of one run, parallel tests) never see or leave a partial file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".partial", delete=False) as file:
        file.write(data)
    os.replace(file.name, path)
