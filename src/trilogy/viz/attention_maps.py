"""Real attention weights of a model on a text, with the tokens to label them, the masks as attention received
them, the queries and keys each head compared, and PNG heatmaps.

The weights come from ``model.run(..., return_attention=True).attentions``: per kind ("encoder", "decoder",
"cross") a list over layers of (B, H, T, S) tensors; here B = 1. What each attention module was handed (its
input, mask, T5 bias, rotary angles) is seen by a forward pre-hook, and its public ``project`` turns that input
into the queries and keys (after RoPE) the weights were computed from.

Legend: H heads, T query length, S key length, D head size.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import TrilogyError
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


def attention_modules(model: TransformerModel) -> dict[str, list[nn.Module]]:
    """Each kind's attention module per layer: each stack's self-attention under the stack's role, and the
    cross-attention of a stack that has one under "cross"."""
    modules = {}
    for name, stack in model.stacks().items():
        modules[name] = [layer.self_attn for layer in stack.layers]
        if stack.spec.cross_attention:
            modules["cross"] = [layer.cross_attn for layer in stack.layers]
    return modules


@contextmanager
def _seen_calls(model: TransformerModel):
    """kind -> per layer the (input, keyword arguments) its attention module was last called with."""
    calls = {kind: [None] * len(modules) for kind, modules in attention_modules(model).items()}
    handles = []
    for kind, modules in attention_modules(model).items():
        for layer, module in enumerate(modules):
            def seen(_module, args, kwargs, kind=kind, layer=layer):
                calls[kind][layer] = (args[0], kwargs)
            handles.append(module.register_forward_pre_hook(seen, with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _vectors(module: nn.Module, x: Tensor, kwargs: dict) -> HeadVectors:
    q, k, _ = module.project(x, kwargs.get("context"), kwargs.get("rotary"))  # (1, H, T, D), (1, K, S, D)
    k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)  # (1, H, S, D)
    bias = kwargs.get("bias")
    return HeadVectors(q[0].float().cpu(), k[0].float().cpu(), None if bias is None else bias[0].float().cpu(),
                       float(module.scale))


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
    with _seen_calls(model) as calls:
        if model.structure.has_source:
            if target_ids is None:
                raise TrilogyError("an encoder-decoder needs the decoder's input too (--target TEXT)")
            out = model.run(ids, target_ids, return_attention=True)
            queries = {"encoder": labels, "decoder": target_labels, "cross": target_labels}
            keys = {"encoder": labels, "decoder": target_labels, "cross": labels}
        else:
            out = model.run(ids, return_attention=True)
            kind = model.structure.output.name
            queries, keys = {kind: labels}, {kind: labels}
    weights = {kind: [layer[0].float().cpu() for layer in out.attentions[kind]]  # (H, T, S) each
               for kind in ("encoder", "decoder", "cross") if kind in out.attentions}
    masks, vectors = {}, {}
    for kind, modules in attention_modules(model).items():
        _, kwargs = calls[kind][0]
        query_len, key_len = weights[kind][0].shape[1:]
        masks[kind] = allowed(kwargs.get("mask"), kwargs.get("bias"), kwargs.get("is_causal", False),
                              query_len, key_len)[0].cpu()  # (T, S)
        wanted = range(len(modules)) if vector_layers is None else vector_layers
        vectors[kind] = {layer: _vectors(modules[layer], *calls[kind][layer]) for layer in wanted
                         if 0 <= layer < len(modules)}
    return AttentionMaps(weights, {k: queries[k] for k in weights}, {k: keys[k] for k in weights}, masks, vectors)


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
