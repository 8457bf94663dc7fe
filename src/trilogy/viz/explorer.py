"""The attention explorer as one HTML fragment: ``explorer.html`` beside this module, with its data embedded.

The fragment is scoped so that any number of them work in one notebook or page: a root ``<div>`` with a unique
id, CSS rules that all start with that id, a script that runs inside a function and looks up only elements under
its root, and data in a ``<script type="application/json">`` inside the root. It loads nothing from the network.

Legend: H heads, T query length, S key length, D head size.
"""

from __future__ import annotations

import html
import json
import uuid
from pathlib import Path

from ..errors import TrilogyError
from .attention_maps import AttentionMaps, HeadVectors
from .pack import bits, floats, quantised

TEMPLATE = Path(__file__).with_name("explorer.html")
VIEWS = ("head", "model", "neuron")


def explorer_data(maps: AttentionMaps, model_name: str, view: str = "head", layers: list[int] | None = None,
                  heads: list[int] | None = None, generation: dict | None = None) -> dict:
    """What the page needs, packed: per kind the labels, the chosen layers' and heads' weights (one byte each),
    the mask as applied (one bit each), and the queries and keys (float32) of the layers in ``maps.vectors``.

    Args:
        layers, heads: the ones to include (None: all).
        generation: {"first": index of the first generated decoder token, "count": how many} or None.
    """
    if view not in VIEWS:
        raise TrilogyError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    kinds = {}
    for kind, per_layer in maps.weights.items():
        chosen_layers = _chosen(layers, len(per_layer), "layer")
        chosen_heads = _chosen(heads, per_layer[0].size(0), "head")
        vectors = maps.vectors.get(kind, {})
        kinds[kind] = {
            "queries": maps.queries[kind], "keys": maps.keys[kind], "layers": chosen_layers, "heads": chosen_heads,
            "weights": [quantised(per_layer[layer][chosen_heads]) for layer in chosen_layers],  # (H, T, S) each
            "allowed": bits(maps.allowed[kind]) if kind in maps.allowed else None,  # (T, S)
            "vectors": [_packed_vectors(vectors[layer], chosen_heads) if layer in vectors else None
                        for layer in chosen_layers],
        }
    return {"model": model_name, "view": view, "kinds": kinds, "generation": generation}


def _chosen(wanted: list[int] | None, count: int, what: str) -> list[int]:
    if wanted is None:
        return list(range(count))
    wanted = sorted(set(wanted))
    if not wanted or wanted[0] < 0 or wanted[-1] >= count:
        raise TrilogyError(f"{what}s must be among 0..{count - 1}, got {wanted}")
    return wanted


def _packed_vectors(vectors: HeadVectors, heads: list[int]) -> dict:
    return {"q": floats(vectors.q[heads]), "k": floats(vectors.k[heads]),  # (H, T, D), (H, S, D)
            "bias": None if vectors.bias is None else floats(vectors.bias[heads]),  # (H, T, S)
            "d_head": vectors.q.size(-1), "scale": vectors.scale}


def fragment(data: dict) -> str:
    """The explorer for ``data`` as an HTML fragment with a root id of its own."""
    root = f"trilogy-attention-{uuid.uuid4().hex[:12]}"
    # "</" inside the JSON would end the <script> element early
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return TEMPLATE.read_text().replace("__ROOT__", root).replace("__DATA__", payload)


def page(html_fragment: str, title: str) -> str:
    """A whole HTML document around one fragment."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"</head>\n<body>\n<h1 style=\"font: 600 18px system-ui, sans-serif\">{html.escape(title)}</h1>\n"
            f"{html_fragment}\n</body>\n</html>\n")
