"""Real attention weights of a model on a text, with the tokens to label them, the masks as attention received
them, the queries and keys each head compared, and PNG heatmaps.

Everything comes through the model's public interface: one ``run_with_cache`` keeps each layer's weights
(``attn.hook_pattern``, ``cross_attn.hook_pattern``) and, for the layers asked for, the queries and keys as
compared (``hook_rot_q``, ``hook_rot_k`` after RoPE, else ``hook_q``, ``hook_k``); each stack's ``masks`` gives
the mask and T5's bias its layers received.

Legend: H heads, T query length, S key length, D head size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..blocks.stack import TransformerStack
from ..errors import TrilogyError
from ..hooks import ActivationCache, stack_prefix
from ..models import TransformerModel
from .mask_panels import allowed

KIND_TITLES = {"encoder": "encoder self-attention", "decoder": "decoder self-attention",
               "cross": "cross-attention (decoder -> encoder)"}


@dataclass
class HeadVectors:
    """What one layer's attention compared: scores = q . k * scale + bias, then -inf where not allowed."""

    q: Tensor  # (H, T, D) after RoPE where used
    k: Tensor  # (H, S, D), key heads repeated to match the query heads (grouped-query attention)
    bias: Tensor | None  # (H, T, S) T5's relative-position bias with the mask folded in (-inf), else None
    scale: float


@dataclass
class AttentionMaps:
    """One text's attention: per kind, the layers' weights (H, T, S) with query and key labels, the mask as
    applied (T, S), and, for the layers asked for, the queries and keys behind the weights. On the CPU."""

    weights: dict[str, list[Tensor]]  # kind -> per layer (H, T, S)
    queries: dict[str, list[str]]  # kind -> T labels
    keys: dict[str, list[str]]  # kind -> S labels
    allowed: dict[str, Tensor] = field(default_factory=dict)  # kind -> (T, S) bool, True = may attend
    vectors: dict[str, dict[int, HeadVectors]] = field(default_factory=dict)  # kind -> layer -> vectors

    def to_dict(self, decimals: int = 4) -> dict:
        """Plain lists for JSON: {kind: {queries, keys, layers: [layer][head][query][key]}}."""
        return {kind: {"queries": self.queries[kind], "keys": self.keys[kind],
                       "layers": [layer.round(decimals=decimals).tolist() for layer in layers]}
                for kind, layers in self.weights.items()}


def attention_names(model: TransformerModel) -> dict[str, list[str]]:
    """Each kind's attention per layer, as the start of its hook point names: each stack's self-attention under
    the stack's role ("blocks.0.attn", "encoder.blocks.0.attn"), and the cross-attention of a stack that has
    one under "cross" ("decoder.blocks.0.cross_attn")."""
    names = {}
    for spec in model.structure.stacks:
        prefix = stack_prefix(model, spec.name)
        names[spec.name] = [f"{prefix}blocks.{i}.attn" for i in range(spec.n_layers)]
        if spec.cross_attention:
            names["cross"] = [f"{prefix}blocks.{i}.cross_attn" for i in range(spec.n_layers)]
    return names


@torch.no_grad()
def attention_maps(model: TransformerModel, ids: Tensor, labels: list[str], target_ids: Tensor | None = None,
                   target_labels: list[str] | None = None, vector_layers: list[int] | None = None
                   ) -> AttentionMaps:
    """Run ``model`` once on one sequence and collect its attention weights.

    Args:
        ids: (1, T) the text (the source for an encoder-decoder) and its T token labels.
        target_ids: (1, T_tgt) the decoder's input (encoder-decoder only) and its labels.
        vector_layers: the layers whose queries and keys to keep (None: all; ones a kind lacks are skipped).
    """
    model.eval()
    if model.structure.has_source:
        if target_ids is None:
            raise TrilogyError("an encoder-decoder needs the decoder's input too (--target TEXT)")
        inputs: tuple[Tensor, ...] = (ids, target_ids)
        queries = {"encoder": labels, "decoder": target_labels, "cross": target_labels}
        keys = {"encoder": labels, "decoder": target_labels, "cross": labels}
    else:
        inputs = (ids,)
        kind = model.structure.output.name
        queries, keys = {kind: labels}, {kind: labels}
    names = attention_names(model)
    wanted = {kind: [layer for layer in (range(len(layers)) if vector_layers is None else vector_layers)
                     if 0 <= layer < len(layers)] for kind, layers in names.items()}
    points = [f"{name}.hook_pattern" for layers in names.values() for name in layers]
    available = model.hook_points()
    points += [_compared(available, names[kind][layer], vector) for kind in names for layer in wanted[kind]
               for vector in "qk"]
    _, cache = model.run_with_cache(*inputs, names=points)
    weights = {kind: [cache[f"{name}.hook_pattern"][0].float().cpu() for name in layers]  # (H, T, S) each
               for kind, layers in names.items()}
    stacks = model.stacks()
    masks, vectors = {}, {}
    for kind, layers in names.items():
        query_len, key_len = weights[kind][0].shape[1:]
        received = _received(stacks.get(kind), len(layers), query_len, key_len)  # per layer (mask, bias, causal)
        masks[kind] = allowed(*received[0], query_len, key_len)[0].cpu()  # (T, S)
        vectors[kind] = {layer: _vectors(cache, layers[layer], received[layer][1], model.config.scale)
                         for layer in wanted[kind]}
    return AttentionMaps(weights, {k: queries[k] for k in weights}, {k: keys[k] for k in weights}, masks, vectors)


def _received(stack: TransformerStack | None, n_layers: int, query_len: int, key_len: int
              ) -> list[tuple[Tensor | None, Tensor | None, bool]]:
    """What each layer's attention received besides q, k and v, for one sequence without padding: its stack's
    mask, bias and causal flag for the layer's window (``TransformerStack.masks``); cross-attention (no stack
    given) nothing, there being no source padding to hide."""
    if stack is None:
        return [(None, None, False)] * n_layers
    by_window = {window: stack.masks(None, query_len, key_len, window=window)
                 for window in dict.fromkeys(stack.spec.windows)}
    return [by_window[window] for window in stack.spec.windows]


def _compared(names: Mapping[str, object], attention: str, vector: str) -> str:
    """Of ``names`` (hook points, or a cache), the one of the queries or keys (``vector`` "q", "k") an attention
    compares: after rotary where it turns them (``hook_rot_q``), else as projected (``hook_q``)."""
    rotated = f"{attention}.hook_rot_{vector}"
    return rotated if rotated in names else f"{attention}.hook_{vector}"


def _vectors(cache: ActivationCache, attention: str, bias: Tensor | None, scale: float) -> HeadVectors:
    q = cache[_compared(cache, attention, "q")]  # (1, H, T, D)
    k = cache[_compared(cache, attention, "k")]  # (1, K, S, D)
    k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)  # (1, H, S, D)
    return HeadVectors(q[0].float().cpu(), k[0].float().cpu(), None if bias is None else bias[0].float().cpu(),
                       float(scale))


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
