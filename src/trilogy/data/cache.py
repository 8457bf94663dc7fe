"""Where trilogy keeps data it builds or downloads once: ``$TRILOGY_CACHE``, else ``$XDG_CACHE_HOME/trilogy``,
else ``~/.cache/trilogy``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    root = os.environ.get("TRILOGY_CACHE")
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trilogy"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
