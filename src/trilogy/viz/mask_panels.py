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
from ..config import TINY_PRESETS, ModelConfig
from ..errors import TrilogyError
from ..models import TransformerModel, build_model


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
        raise TrilogyError(f"--pad must be in [0, {length}) so that a real token is left, got {pad}")
    mask = torch.ones(1, length, dtype=torch.long)
    mask[:, length - pad:] = 0
    return mask


def _labels(length: int, pad: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" if i < length - pad else "pad" for i in range(length)]


def _tiny(arch: str) -> ModelConfig:
    return ModelConfig.from_preset(TINY_PRESETS[arch])


def _check_lengths(seq: int, src: int) -> None:
    for name, value in (("--seq", seq), ("--src", src)):
        if not 1 <= value <= 256:
            raise TrilogyError(f"{name} must be between 1 and 256 (a picture of more is unreadable), got {value}")


@torch.no_grad()
def model_masks(model: TransformerModel, seq: int = 6, src: int | None = None, pad: int = 2,
                name: str = "") -> dict[str, MaskPanel]:
    """The masks one model's attention receives for a row of ``seq`` target tokens (``src`` source tokens
    for an encoder-decoder, default ``seq``), without padding and with the last ``pad`` positions padded; a
    prefix LM's with a prefix of half the padded row's real tokens (rounded up), in both.

    Returns panels keyed ``self``, ``self+padding`` (encoder or decoder stack), and for an encoder-decoder
    ``encoder+padding``, ``decoder``, ``decoder+padding`` and ``cross+padding``.
    """
    src = seq if src is None else src
    _check_lengths(seq, src)
    config = model.config
    target_pad, source_pad = _real_tokens(seq, pad), _real_tokens(src, min(pad, src - 1))
    padded, padded_source = _labels(seq, pad, "t"), _labels(src, min(pad, src - 1), "s")
    plain = [f"t{i}" for i in range(seq)]
    bias_note = " (folded into the bias)" if config.position == "relative" else ""

    def panel(title, stack, attention_mask, length, labels, prefix_length=None):
        mask, bias, is_causal = stack.masks(attention_mask, length, length, prefix_length)
        return MaskPanel(f"{name}{title}", allowed(mask, bias, is_causal, length, length)[0], labels, labels)

    stacks, output = model.stacks(), model.structure.output
    if output.prefix:
        prefix = (seq - pad + 1) // 2
        what, prefix_length = f"{output.name}\nbidirectional prefix ({prefix}) + causal rest", torch.tensor([prefix])
        return {"self": panel(what + bias_note, stacks[output.name], None, seq, plain, prefix_length),
                "self+padding": panel(f"{what} + padding", stacks[output.name], target_pad, seq, padded,
                                      prefix_length)}
    if not output.cross_attention:
        stack, what = stacks[output.name], f"{output.name}\n{output.attention}"
        note = bias_note if output.causal else ""
        return {"self": panel(what + note, stack, None, seq, plain),
                "self+padding": panel(f"{what} + padding", stack, target_pad, seq, padded)}
    cross = allowed(cross_attention_mask(source_pad), None, False, seq, src)[0]
    return {
        "encoder+padding": panel("encoder\nbidirectional + source padding", stacks["encoder"], source_pad, src,
                                 padded_source),
        "decoder": panel("decoder self-attention\ncausal" + bias_note, stacks["decoder"], None, seq, plain),
        "decoder+padding": panel("decoder self-attention\ncausal + target padding", stacks["decoder"], target_pad,
                                 seq, padded),
        "cross+padding": MaskPanel(f"{name}cross-attention\ndecoder -> encoder, source padding", cross, plain,
                                   padded_source),
    }


def family_masks(seq: int = 6, src: int | None = None, pad: int = 2) -> list[MaskPanel]:
    """Eight panels across the families, from tiny models of each: BERT (bidirectional + padding), GPT (causal;
    causal + padding), T5 (encoder with source padding; decoder self-attention, causal; cross-attention with
    source padding), and the prefix LM (a bidirectional prefix, then causal; with padding)."""
    src = seq if src is None else src
    _check_lengths(seq, src)
    with torch.no_grad():
        bert = model_masks(build_model(_tiny("encoder")), seq, src, pad, "BERT ")
        gpt = model_masks(build_model(_tiny("decoder")), seq, src, pad, "GPT ")
        t5 = model_masks(build_model(_tiny("encoder-decoder")), seq, src, pad, "T5 ")
        prefix_lm = model_masks(build_model(ModelConfig.from_preset("tiny-prefix-lm")), seq, src, pad, "prefix LM ")
    return [bert["self+padding"], gpt["self"], gpt["self+padding"], t5["encoder+padding"], t5["decoder"],
            t5["cross+padding"], prefix_lm["self"], prefix_lm["self+padding"]]


def draw_masks(panels: list[MaskPanel], path: str) -> None:
    """Write the panels as one PNG: coloured = may attend, white = blocked."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(5 * columns, 4.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, panel in zip(axes, panels, strict=False):
        colour = ("tab:red" if "cross" in panel.title else "tab:orange" if "T5" in panel.title
                  else "tab:purple" if "prefix" in panel.title else "tab:blue" if "encoder" in panel.title
                  else "tab:green")
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
