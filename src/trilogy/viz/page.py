"""``attention.html``: one self-contained page (no network, no external files) to explore attention maps.

The page is ``attention.html`` beside this module with the maps embedded as JSON. A user picks the kind
(encoder, decoder, cross), the layer and a head or all heads, and hovers a query token to see where it attends.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .attention import AttentionMaps

TEMPLATE = Path(__file__).with_name("attention.html")


def write_page(maps: AttentionMaps, path: str | Path, title: str, model_name: str) -> Path:
    """Write the page for ``maps`` to ``path`` and return it."""
    data = {"model": model_name, "kinds": maps.to_dict()}
    # "</" inside the JSON would end the <script> element early
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = TEMPLATE.read_text().replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)
    path = Path(path)
    path.write_text(page)
    return path
