"""The attention masks exactly as the models build them, for pictures.

Every matrix here comes from the code the models run: ``TransformerStack.masks`` for self-attention (which
may hand attention a bool mask, T5's additive bias with the mask folded in, or just ``is_causal``) and
``blocks.masks.cross_attention_mask`` for cross-attention. ``allowed`` turns any of those three forms into one
(T, S) boolean matrix, True = the query may attend to the key.

Legend: B batch, H heads, T query length, S key length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..blocks.masks import causal_mask, cross_attention_mask
from ..config import ModelConfig
from ..models import build_model


@dataclass
class MaskPanel:
    """One picture: which query (row) may attend to which key (column)."""

    title: str
    allowed: Tensor  # (T, S) bool
    query_labels: list[str]
    key_labels: list[str]


def allowed(mask: Tensor | None, bias: Tensor | None, is_causal: bool, query_len: int, key_len: int) -> Tensor:
    """What attention receives, as one matrix per batch row.

    Args:
        mask: (B|1, 1, T|1, S) bool or None; bias: (B|1, H, T, S) additive, -inf = blocked, or None;
        is_causal: attention applies the causal mask itself.
    Returns:
        (B|1, T, S) bool, True = may attend.
    """
    if bias is not None:
        return torch.isfinite(bias).all(dim=1)  # (B|1, T, S)
    if mask is not None:
        return mask[:, 0].expand(mask.size(0), query_len, key_len)  # (B|1, T, S)
    if is_causal:
        return causal_mask(query_len, key_len)[:, 0]  # (1, T, S)
    return torch.ones(1, query_len, key_len, dtype=torch.bool)


def _real_tokens(length: int, pad: int) -> Tensor:
    """(1, length) attention mask with the last ``pad`` positions padding (1 = real token)."""
    if not 0 <= pad < length:
        raise ValueError(f"--pad must be in [0, {length}) so that a real token is left, got {pad}")
    mask = torch.ones(1, length, dtype=torch.long)
    mask[:, length - pad:] = 0
    return mask


def _labels(length: int, pad: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" if i < length - pad else "pad" for i in range(length)]


def _tiny(arch: str, **changes) -> ModelConfig:
    preset = {"encoder": "tiny-bert", "decoder": "tiny-gpt2", "encoder-decoder": "tiny-t5"}[arch]
    return ModelConfig.from_preset(preset, **changes)


def family_masks(seq: int = 6, src: int | None = None, pad: int = 2) -> list[MaskPanel]:
    """The masks each family's attention receives, for a batch row of ``seq`` target tokens (``src`` source
    tokens for T5, default ``seq``) whose last ``pad`` positions are padding.

    Returns six panels: BERT (bidirectional + padding), GPT (causal), GPT (causal + padding), T5 encoder
    (bidirectional + source padding), T5 decoder self-attention (causal), T5 cross-attention (source padding).
    """
    src = seq if src is None else src
    for name, value in (("--seq", seq), ("--src", src)):
        if not 1 <= value <= 128:
            raise ValueError(f"{name} must be between 1 and 128, got {value}")
    with torch.no_grad():
        bert = build_model(_tiny("encoder"))
        gpt = build_model(_tiny("decoder"))
        t5 = build_model(_tiny("encoder-decoder"))
        target_pad, source_pad = _real_tokens(seq, pad), _real_tokens(src, min(pad, src - 1))
        t_labels, s_labels = _labels(seq, pad, "t"), _labels(src, min(pad, src - 1), "s")
        plain = [f"t{i}" for i in range(seq)]

        def self_panel(title, stack, attention_mask, length, q_labels, k_labels):
            mask, bias, is_causal = stack.masks(attention_mask, length, length)
            return MaskPanel(title, allowed(mask, bias, is_causal, length, length)[0], q_labels, k_labels)

        cross = allowed(cross_attention_mask(source_pad), None, False, seq, src)[0]
        return [
            self_panel("BERT encoder\nbidirectional + padding", bert.stack, target_pad, seq, t_labels, t_labels),
            self_panel("GPT decoder\ncausal", gpt.stack, None, seq, plain, plain),
            self_panel("GPT decoder\ncausal + padding", gpt.stack, target_pad, seq, t_labels, t_labels),
            self_panel("T5 encoder\nbidirectional + source padding", t5.encoder, source_pad, src, s_labels,
                       s_labels),
            self_panel("T5 decoder self-attention\ncausal (folded into the bias)", t5.decoder, None, seq, plain,
                       plain),
            MaskPanel("T5 cross-attention\ndecoder -> encoder, source padding", cross, plain, s_labels),
        ]


def draw_masks(panels: list[MaskPanel], path: str) -> None:
    """Write the panels as one PNG: coloured = may attend, white = blocked."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    columns = 3
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(5 * columns, 4.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    colours = ["tab:blue", "tab:green", "tab:green", "tab:orange", "tab:orange", "tab:red"]
    for ax, panel, colour in zip(axes, panels, colours, strict=False):
        matrix = panel.allowed.int().numpy()
        ax.imshow(matrix, cmap=ListedColormap(["white", colour]), vmin=0, vmax=1)
        ax.set_title(panel.title, fontsize=11)
        ax.set_xticks(range(len(panel.key_labels)), panel.key_labels, rotation=90, fontsize=8)
        ax.set_yticks(range(len(panel.query_labels)), panel.query_labels, fontsize=8)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (attending)")
        ax.set_xticks([x - 0.5 for x in range(1, matrix.shape[1])], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, matrix.shape[0])], minor=True)
        ax.grid(which="minor", color="lightgrey", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    figure.suptitle("Attention masks as trilogy builds them (coloured = may attend)", fontsize=13)
    figure.savefig(path, dpi=110)
