"""The attention explorer as one HTML fragment: ``explorer.html`` beside this module, with its data embedded.

The fragment is scoped so that any number of them work in one notebook or page: a root ``<div>`` with a unique
id, CSS rules that all start with that id, a script that runs inside a function and looks up only elements under
its root, and data in a ``<script type="application/json">`` inside the root. It loads nothing from the network.

The live view (``live.py``) runs the same page with the data of ``explorer_data(..., live=True)``, which hold
one head; the page asks the kernel for each other head it shows, and ``piece`` answers from the maps collected
once.

Legend: H heads, T query length, S key length, D head size, L layers, P positions.
"""

from __future__ import annotations

import html
import json
import uuid
from pathlib import Path

from ..errors import TrilogyError
from .attention_maps import AttentionMaps, HeadVectors
from .logit_lens import LogitLens
from .pack import bits, floats, quantised

TEMPLATE = Path(__file__).with_name("explorer.html")
VIEWS = ("head", "model", "neuron", "lens")
#: what the live view asks for, one head of one layer at a time
PARTS = ("weights", "vectors")


def explorer_data(maps: AttentionMaps, model_name: str, view: str = "head", layers: list[int] | None = None,
                  heads: list[int] | None = None, generation: dict | None = None, lens: LogitLens | None = None,
                  live: bool = False) -> dict:
    """What the page needs, packed: per kind the labels, the chosen layers' and heads' weights (one byte each),
    the mask as applied (one bit each), and the queries and keys (float32) of the layers in ``maps.vectors``.

    Args:
        layers, heads: the ones to include (None: all).
        generation: {"first": index of the first generated decoder token, "count": how many} or None.
        lens: the logit lens of the "lens" view (which needs it), or None.
        live: pack only each kind's first layer's first head and leave the other heads' entries null, for the
            page to ask for (``piece``), so that the data stay small whatever the model and the text.
    """
    if view not in VIEWS:
        raise TrilogyError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    if view == "lens" and lens is None:
        raise TrilogyError("the lens view needs the logit lens (trilogy.viz.logit_lens)")
    kinds = {}
    for kind, per_layer in maps.weights.items():
        chosen_layers = _chosen(layers, len(per_layer), "layer")
        chosen_heads = _chosen(heads, per_layer[0].size(0), "head")
        vectors = maps.vectors.get(kind, {})
        if live:
            weights: list = [[None] * len(chosen_heads) for _ in chosen_layers]
            weights[0][0] = _packed_weights(maps, kind, chosen_layers[0], chosen_heads[:1])
            packed_vectors = [[None] * len(chosen_heads) if layer in vectors else None for layer in chosen_layers]
        else:
            weights = [_packed_weights(maps, kind, layer, chosen_heads) for layer in chosen_layers]
            packed_vectors = [_packed_vectors(vectors[layer], chosen_heads) if layer in vectors else None
                              for layer in chosen_layers]
        kinds[kind] = {
            "queries": maps.queries[kind], "keys": maps.keys[kind], "layers": chosen_layers, "heads": chosen_heads,
            "weights": weights, "allowed": bits(maps.allowed[kind]) if kind in maps.allowed else None,  # (T, S)
            "vectors": packed_vectors,
        }
    data = {"model": model_name, "view": view, "kinds": kinds, "generation": generation}
    if lens is not None:
        data["lens"] = lens_data(lens)
    return data


def piece(maps: AttentionMaps, data: dict, request: object) -> dict:
    """The live view's request {"kind", "layer", "head", "part": "weights" or "vectors"} answered from
    ``maps`` (the model does not run again): the request with "data", that head packed as ``explorer_data``
    packs a layer. A request the page ``data`` could not make gets {"error": one line, "request": request}."""
    try:
        kind, layer, head, part = _requested(maps, data, request)
    except TrilogyError as error:
        return {"error": str(error), "request": request}
    packed = (_packed_weights(maps, kind, layer, [head]) if part == "weights"
              else _packed_vectors(maps.vectors[kind][layer], [head]))
    return {"kind": kind, "layer": layer, "head": head, "part": part, "data": packed}


def _requested(maps: AttentionMaps, data: dict, request: object) -> tuple[str, int, int, str]:
    fields = ("kind", "layer", "head", "part")
    if not isinstance(request, dict) or sorted(request) != sorted(fields):
        raise TrilogyError(f"a request has the fields {', '.join(fields)}, got {request!r:.200}")
    kind, layer, head, part = (request[name] for name in fields)
    if kind not in data["kinds"]:
        raise TrilogyError(f"kind must be one of {', '.join(data['kinds'])}, got {kind!r:.40}")
    for name, value in (("layer", layer), ("head", head)):
        shown = data["kinds"][kind][f"{name}s"]
        if type(value) is not int or value not in shown:
            raise TrilogyError(f"{name} must be one of the view's {name}s {shown}, got {value!r:.40}")
    if part not in PARTS:
        raise TrilogyError(f"part must be one of {', '.join(PARTS)}, got {part!r:.40}")
    if part == "vectors" and layer not in maps.vectors.get(kind, {}):
        raise TrilogyError(f"this view was made without the queries and keys of layer {layer} (layers=)")
    return kind, layer, head, part


def packed_size(maps: AttentionMaps, layers: list[int] | None = None, heads: list[int] | None = None) -> int:
    """The bytes the self-contained page's data take before base64: a byte per weight, four per component of
    the queries, keys and bias (the mask and labels are small beside them)."""
    total = 0
    for kind, per_layer in maps.weights.items():
        chosen_layers = _chosen(layers, len(per_layer), "layer")
        n_heads = len(_chosen(heads, per_layer[0].size(0), "head"))
        total += len(chosen_layers) * n_heads * per_layer[0][0].numel()
        for layer in set(chosen_layers) & set(maps.vectors.get(kind, {})):
            vectors = maps.vectors[kind][layer]
            parts = [vectors.q, vectors.k] + ([vectors.bias] if vectors.bias is not None else [])
            total += 4 * n_heads * sum(part[0].numel() for part in parts)
    return total


def lens_data(lens: LogitLens) -> dict:
    """The logit lens for the page: labels, the target's and the top token's probabilities (float32, (L + 1, P)),
    and each cell's top token as an index into a list of the distinct ones."""
    tokens = list(dict.fromkeys(label for row in lens.top_labels for label in row))
    index = {token: i for i, token in enumerate(tokens)}
    return {"rows": lens.rows, "positions": lens.positions, "targets": lens.targets,
            "target_probability": floats(lens.target_probabilities), "top_probability": floats(lens.top_probabilities),
            "tokens": tokens, "top": [[index[label] for label in row] for row in lens.top_labels]}


def _chosen(wanted: list[int] | None, count: int, what: str) -> list[int]:
    if wanted is None:
        return list(range(count))
    wanted = sorted(set(wanted))
    if not wanted or wanted[0] < 0 or wanted[-1] >= count:
        raise TrilogyError(f"{what}s must be among 0..{count - 1}, got {wanted}")
    return wanted


def _packed_weights(maps: AttentionMaps, kind: str, layer: int, heads: list[int]) -> str:
    return quantised(maps.weights[kind][layer][heads])  # (H, T, S)


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
