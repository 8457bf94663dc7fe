"""How each family attends: one sentence through the three trained models with ``return_attention=True``, and
the last layer's heads drawn side by side, one row per attention kind.

Legend: H heads, T query length, S key length.
"""

from __future__ import annotations

import torch

from ..data import special_tokens

SENTENCE = "To be, or not to be, that is the question."


def _labels(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_token(i).replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\\n") for i in ids]


@torch.no_grad()
def attention_rows(models: dict, sentence: str = SENTENCE) -> list[dict]:
    """The last layer's attention of each model on ``sentence``.

    Args:
        models: unit name ("bert", "gpt", "t5") -> trained model in eval mode (missing ones are skipped).
    Returns:
        rows with ``title``, ``weights`` (H, T, S), ``queries`` and ``keys`` (token strings).
    """
    rows = []
    if "bert" in models:
        model = models["bert"]
        ids = model.tokenizer.encode(sentence).ids  # [CLS] ... [SEP]
        out = model.run(torch.tensor([ids], device=model.device), return_attention=True)
        labels = _labels(model.tokenizer, ids)
        rows.append(dict(title="BERT encoder: bidirectional", weights=out.attentions["encoder"][-1][0],
                         queries=labels, keys=labels))
    if "gpt" in models:
        model = models["gpt"]
        ids = model.tokenizer.encode(sentence, add_special_tokens=False).ids
        out = model.run(torch.tensor([ids], device=model.device), return_attention=True)
        labels = _labels(model.tokenizer, ids)
        rows.append(dict(title="GPT decoder: causal", weights=out.attentions["decoder"][-1][0],
                         queries=labels, keys=labels))
    if "t5" in models:
        model = models["t5"]
        source = model.tokenizer.encode(sentence).ids  # ... </s>
        target = [special_tokens(model.tokenizer)["decoder_start"], *source[:-1]]
        out = model.run(torch.tensor([source], device=model.device), torch.tensor([target], device=model.device),
                        return_attention=True)
        source_labels, target_labels = _labels(model.tokenizer, source), _labels(model.tokenizer, target)
        rows.append(dict(title="T5 encoder: bidirectional", weights=out.attentions["encoder"][-1][0],
                         queries=source_labels, keys=source_labels))
        rows.append(dict(title="T5 decoder: causal self-attention", weights=out.attentions["decoder"][-1][0],
                         queries=target_labels, keys=target_labels))
        rows.append(dict(title="T5 cross-attention: decoder -> encoder", weights=out.attentions["cross"][-1][0],
                         queries=target_labels, keys=source_labels))
    return rows


def draw_attention(rows: list[dict], path, sentence: str = SENTENCE) -> None:
    """One PNG: a row per attention kind, a column per head of the last layer plus their mean."""
    from matplotlib.figure import Figure

    heads = max(row["weights"].size(0) for row in rows)
    figure = Figure(figsize=(3.2 * (heads + 1), 3.3 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), heads + 1, squeeze=False)
    for row, row_axes in zip(rows, axes, strict=True):
        weights = row["weights"].float().cpu()  # (H, T, S)
        panels = [*weights, weights.mean(0)]
        for column, (ax, matrix) in enumerate(zip(row_axes, panels, strict=False)):
            ax.imshow(matrix.numpy(), cmap="viridis", vmin=0)  # each panel scaled to its own largest weight
            name = f"head {column}" if column < weights.size(0) else "mean of heads"
            ax.set_title(f"{row['title']}\n{name}" if column == 0 else name, fontsize=8, loc="left")
            ax.set_xticks(range(len(row["keys"])), row["keys"], rotation=90, fontsize=6)
            ax.set_yticks(range(len(row["queries"])), row["queries"] if column == 0 else [], fontsize=6)
    figure.suptitle(f"Last layer's attention on {sentence!r} (row = query, column = key attended to)", fontsize=11)
    figure.savefig(path, dpi=90)
