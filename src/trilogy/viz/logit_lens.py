"""The logit lens: the residual stream of the output stack after each layer, read through the model's own
ending as if it were the last layer's output: the stack's final norm (if it has one), then the head over the
vocabulary, as the model reads its last layer. GPT-2 and Llama: final norm and unembedding; BERT: no final norm,
the MLM head (dense, GELU, norm, decoder); T5: the decoder's final norm, the head's scaling and the head.

Legend: L layers, T positions, C model width, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import TrilogyError
from ..hooks import stack_prefix
from ..models import TransformerModel
from .heatmap import Picture, heatmap
from .tokens import token_label


@dataclass
class LogitLens(Picture):
    """What each layer's residual stream predicts at each position: the top token and the probability of the
    target. Row 0 is the embeddings, row i + 1 the stream after layer i; the last row is the model's output."""

    rows: list[str]  # L + 1 labels: "embeddings", "layer 0", ...
    positions: list[str]  # T labels, the input tokens
    targets: list[str]  # T labels, the target token of each position
    target_probabilities: Tensor  # (L + 1, T)
    top_tokens: Tensor  # (L + 1, T) token ids
    top_labels: list[list[str]]  # (L + 1) x T
    top_probabilities: Tensor  # (L + 1, T)

    def figure(self):
        columns = [f"{position}\n→ {target}" for position, target in zip(self.positions, self.targets, strict=True)]
        return heatmap(self.target_probabilities, self.rows, columns, "logit lens: the target's probability "
                       "(colour) and the top token (text)", "probability of the target", self.top_labels, (0.0, 1.0),
                       "Blues")


def vocabulary_logits(model: TransformerModel, residual: Tensor) -> Tensor:
    """The output stack's residual stream ``residual`` (..., T, C) read as its last layer's output is: through
    the stack's final norm and the head over the vocabulary. Returns (..., T, V)."""
    head = model.output_head()
    if head is None:
        raise TrilogyError(f"the logit lens reads through the head over the vocabulary; this model has head="
                           f"{model.config.head!r}")
    final_norm = model.stacks()[model.structure.output.name].final_norm
    return head(final_norm(residual) if final_norm is not None else residual)


@torch.no_grad()
def logit_lens(model: TransformerModel, input_ids: Tensor, target: int | Sequence[int] | Tensor, *,
               decoder_input_ids: Tensor | None = None, labels: list[str] | None = None) -> LogitLens:
    """The logit lens of one sequence.

    Args:
        input_ids: (1, T) the text (an encoder-decoder's source);
        target: the token whose probability to show: one id for every position, or one per position (T,), e.g.
            the next token of each;
        decoder_input_ids: (1, T) an encoder-decoder's decoder input, whose positions the lens reads;
        labels: the T positions' labels (default: their tokens).
    """
    model.eval()
    role = model.structure.output.name
    if model.structure.has_source:
        if decoder_input_ids is None:
            raise TrilogyError("an encoder-decoder's logit lens reads the decoder: give decoder_input_ids")
        inputs: tuple[Tensor, ...] = (input_ids, decoder_input_ids)
    else:
        inputs = (input_ids,)
    ids = inputs[-1]
    if ids.dim() != 2 or ids.size(0) != 1:
        raise TrilogyError(f"the logit lens reads one sequence: ids of shape (1, T), got {tuple(ids.shape)}")
    prefix = stack_prefix(model, role)
    depth = model.structure.output.n_layers
    names = [f"{prefix}blocks.0.hook_resid_pre"] + [f"{prefix}blocks.{i}.hook_resid_post" for i in range(depth)]
    _, cache = model.run_with_cache(*inputs, names=names)
    streams = torch.stack([cache[name][0] for name in names])  # (L + 1, T, C)
    probabilities = vocabulary_logits(model, streams).float().softmax(-1)  # (L + 1, T, V)
    targets = torch.as_tensor(target, device=probabilities.device).flatten()
    if targets.numel() not in (1, ids.size(1)):
        raise TrilogyError(f"target is one token id or one per position ({ids.size(1)}), got {targets.numel()}")
    targets = targets.expand(ids.size(1))  # (T,)
    target_probabilities = probabilities.gather(-1, targets.expand(depth + 1, -1)[..., None])[..., 0]  # (L + 1, T)
    top_probabilities, top_tokens = probabilities.max(-1)  # (L + 1, T) each
    return LogitLens(
        rows=["embeddings"] + [f"layer {i}" for i in range(depth)],
        positions=labels if labels is not None else [token_label(model, i) for i in ids[0].tolist()],
        targets=[token_label(model, i) for i in targets.tolist()],
        target_probabilities=target_probabilities.cpu(), top_tokens=top_tokens.cpu(),
        top_labels=[[token_label(model, i) for i in row] for row in top_tokens.tolist()],
        top_probabilities=top_probabilities.cpu(),
    )
