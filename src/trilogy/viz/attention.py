"""Real attention weights of a model on a text, with the tokens to label them, and their PNG heatmaps.

The weights come from ``model.run(..., return_attention=True).attentions``: per kind ("encoder", "decoder",
"cross") a list over layers of (B, H, T, S) tensors; here B = 1.

Legend: H heads, T query length, S key length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import TrilogyError
from ..models import TransformerModel

KIND_TITLES = {"encoder": "encoder self-attention", "decoder": "decoder self-attention",
               "cross": "cross-attention (decoder -> encoder)"}


@dataclass
class AttentionMaps:
    """One text's attention: per kind, the layers' weights (H, T, S) with query and key labels."""

    weights: dict[str, list[Tensor]]  # kind -> per layer (H, T, S)
    queries: dict[str, list[str]]  # kind -> T labels
    keys: dict[str, list[str]]  # kind -> S labels

    def to_dict(self, decimals: int = 4) -> dict:
        """Plain lists for JSON: {kind: {queries, keys, layers: [layer][head][query][key]}}."""
        return {kind: {"queries": self.queries[kind], "keys": self.keys[kind],
                       "layers": [layer.round(decimals=decimals).tolist() for layer in layers]}
                for kind, layers in self.weights.items()}


@torch.no_grad()
def attention_maps(model: TransformerModel, ids: Tensor, labels: list[str], target_ids: Tensor | None = None,
                   target_labels: list[str] | None = None) -> AttentionMaps:
    """Run ``model`` once on one sequence and collect its attention weights.

    Args:
        ids: (1, T) the text (the source for an encoder-decoder) and its T token labels.
        target_ids: (1, T_tgt) the decoder's input (encoder-decoder only) and its labels.
    """
    model.eval()
    if model.config.arch == "encoder-decoder":
        if target_ids is None:
            raise TrilogyError("an encoder-decoder needs the decoder's input too (--target TEXT)")
        out = model.run(ids, target_ids, return_attention=True)
        queries = {"encoder": labels, "decoder": target_labels, "cross": target_labels}
        keys = {"encoder": labels, "decoder": target_labels, "cross": labels}
    else:
        out = model.run(ids, return_attention=True)
        kind = "encoder" if model.config.arch == "encoder" else "decoder"
        queries, keys = {kind: labels}, {kind: labels}
    weights = {kind: [layer[0].float() for layer in out.attentions[kind]]  # (H, T, S) each
               for kind in ("encoder", "decoder", "cross") if kind in out.attentions}
    return AttentionMaps(weights, {k: queries[k] for k in weights}, {k: keys[k] for k in weights})


def draw_layer(maps: AttentionMaps, kind: str, layer: int, path: str | Path, title: str = "") -> None:
    """One PNG with a heatmap per head of one layer, queries down, keys across."""
    from matplotlib.figure import Figure

    heads = maps.weights[kind][layer]  # (H, T, S)
    n_heads, n_queries, n_keys = heads.shape
    columns = min(n_heads, 4)
    rows = -(-n_heads // columns)
    cell = max(2.6, 0.28 * max(n_queries, n_keys) + 1.2)
    figure = Figure(figsize=(cell * columns, cell * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for head, ax in enumerate(axes):
        if head >= n_heads:
            ax.set_visible(False)
            continue
        image = ax.imshow(heads[head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_title(f"head {head}", fontsize=10)
        ax.set_xticks(range(n_keys), maps.keys[kind], rotation=90, fontsize=7)
        ax.set_yticks(range(n_queries), maps.queries[kind], fontsize=7)
    figure.colorbar(image, ax=axes[:n_heads].tolist(), shrink=0.8, label="attention weight")
    figure.suptitle(f"{title}{KIND_TITLES[kind]}, layer {layer} (rows: queries, columns: keys)", fontsize=12)
    figure.savefig(path, dpi=100)


def draw_all(maps: AttentionMaps, out_dir: str | Path, title: str = "", progress: bool = True) -> list[Path]:
    """A PNG per kind and layer, named ``{kind}_layer{N}.png``; returns their paths."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(kind, layer) for kind, layers in maps.weights.items() for layer in range(len(layers))]
    paths = []
    for kind, layer in tqdm(jobs, desc="heatmaps", unit="png", disable=not progress):
        path = out_dir / f"{kind}_layer{layer}.png"
        draw_layer(maps, kind, layer, path, title)
        paths.append(path)
    return paths
