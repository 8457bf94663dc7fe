"""How each family attends: one sentence through the trained models (``trilogy.viz.attention_maps.attention_maps``,
i.e. ``run(..., return_attention=True)``), drawn as one picture of every family's last layer, head by head, and
written as the interactive pages of ``trilogy.viz.page`` (one per family).

Legend: H heads, T query length, S key length.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import special_tokens
from ..viz.attention_maps import KIND_TITLES, AttentionMaps, attention_maps
from ..viz.page import write_page

SENTENCE = "To be, or not to be, that is the question."
FAMILY_NAMES = {"bert": "BERT", "gpt": "GPT", "t5": "T5"}


def _labels(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_token(i).replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\\n") for i in ids]


def family_maps(models: dict, sentence: str = SENTENCE) -> dict[str, AttentionMaps]:
    """Every layer's attention of each model on ``sentence``; T5's decoder reads the sentence too (after its
    start token), so that its self- and cross-attention can be drawn.

    Args:
        models: "bert" / "gpt" / "t5" -> a trained model with its tokenizer (missing ones are skipped).
    """
    maps = {}
    for name, model in models.items():
        tokenizer, limit = model.tokenizer, model.config.max_seq_len
        ids = tokenizer.encode(sentence).ids[:limit]  # BERT: [CLS] ... [SEP]; T5: ... </s>
        source = torch.tensor([ids], device=model.device)
        target, target_labels = None, None
        if model.structure.has_source:
            target_ids = [special_tokens(tokenizer)["decoder_start"], *ids[:-1]]
            target, target_labels = torch.tensor([target_ids], device=model.device), _labels(tokenizer, target_ids)
        maps[name] = attention_maps(model, source, _labels(tokenizer, ids), target, target_labels)
    return maps


def draw_attention(maps: dict[str, AttentionMaps], path: Path, sentence: str = SENTENCE) -> None:
    """One PNG: a row per family and attention kind (last layer), a column per head plus their mean."""
    from matplotlib.figure import Figure

    rows = [(f"{FAMILY_NAMES[name]} {KIND_TITLES[kind]}", layers[-1], m.queries[kind], m.keys[kind])
            for name, m in maps.items() for kind, layers in m.weights.items()]
    heads = max(weights.size(0) for _, weights, _, _ in rows)
    figure = Figure(figsize=(3.2 * (heads + 1), 3.3 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), heads + 1, squeeze=False)
    for (title, weights, queries, keys), row_axes in zip(rows, axes, strict=True):
        weights = weights.float().cpu()  # (H, T, S)
        for column, (ax, matrix) in enumerate(zip(row_axes, [*weights, weights.mean(0)], strict=False)):
            ax.imshow(matrix.numpy(), cmap="viridis", vmin=0)  # each panel scaled to its own largest weight
            name = f"head {column}" if column < weights.size(0) else "mean of heads"
            ax.set_title(f"{title}\n{name}" if column == 0 else name, fontsize=8, loc="left")
            ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
            ax.set_yticks(range(len(queries)), queries if column == 0 else [], fontsize=6)
    figure.suptitle(f"Last layer's attention on {sentence!r} (row = query, column = key attended to)", fontsize=11)
    figure.savefig(path, dpi=90)


def write_pages(maps: dict[str, AttentionMaps], out: Path) -> dict[str, str]:
    """The interactive page of each family, ``attention-NAME.html`` in ``out``. Returns name -> file name."""
    pages = {}
    for name, family in maps.items():
        file = f"attention-{name}.html"
        write_page(family, out / file, f"trilogy demo: {FAMILY_NAMES[name]} attention on {SENTENCE!r}",
                   f"{FAMILY_NAMES[name]} ({name}/)")
        pages[name] = file
    return pages
