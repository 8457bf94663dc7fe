"""``attention.html``: the explorer of ``explorer.py`` as a page of its own (no network, no external files)."""

from __future__ import annotations

from pathlib import Path

from .attention_maps import AttentionMaps
from .explorer import explorer_data, fragment, page


def write_page(maps: AttentionMaps, path: str | Path, title: str, model_name: str, view: str = "head",
               generation: dict | None = None) -> Path:
    """Write the page for ``maps`` to ``path`` and return it (``view`` and ``generation``: see ``explorer_data``)."""
    path = Path(path)
    path.write_text(page(fragment(explorer_data(maps, model_name, view, generation=generation)), title))
    return path
