"""The logit lens of the explorer's "lens" view: ``trilogy.viz.logit_lens`` on the positions of the stack that
reads out (a decoder-only's text, an encoder-decoder's decoder input, an encoder's text), following by default
the token each position is trained to give."""

from __future__ import annotations

from torch import Tensor

from ..errors import TrilogyError
from ..models import TransformerModel
from .logit_lens import LogitLens, logit_lens
from .tokens import encode


def explorer_lens(model: TransformerModel, ids: Tensor, labels: list[str], target_ids: Tensor | None = None,
                  target_labels: list[str] | None = None, lens_target: str | int | None = None) -> LogitLens:
    """The lens of one sequence, as the explorer has read it.

    Args:
        ids: (1, T) the text (an encoder-decoder's source) and its T labels.
        target_ids: (1, T_tgt) an encoder-decoder's decoder input and its labels: the positions the lens reads.
        lens_target: the token to follow at every position (a text of one token, or its id). Default: the
            next token where the stack is causal (the last position, which has none, is left out), the token
            itself in an encoder (what its MLM head reconstructs).
    """
    positions, position_labels = (target_ids, target_labels) if model.structure.has_source else (ids, labels)
    if lens_target is not None:
        target: int | Tensor = _one_token(model, lens_target)
    elif model.structure.output.causal:
        if positions.size(1) < 2:
            raise TrilogyError("the lens follows the next token: give two tokens or more, or lens_target=")
        target, positions, position_labels = positions[0, 1:], positions[:, :-1], position_labels[:-1]
    else:
        target = positions[0]
    if model.structure.has_source:
        return logit_lens(model, ids, target, decoder_input_ids=positions, labels=position_labels)
    return logit_lens(model, positions, target, labels=position_labels)


def _one_token(model: TransformerModel, token: str | int) -> int:
    if isinstance(token, str):
        ids, _ = encode(model, token, "lens_target")
        if len(ids) != 1:
            raise TrilogyError(f"lens_target must be one token; {token!r} is {len(ids)}")
        return ids[0]
    if not 0 <= token < model.config.vocab_size:
        raise TrilogyError(f"lens_target must be a token id among 0..{model.config.vocab_size - 1}, got {token}")
    return token
