"""Token ids and clean labels for what a user hands the explorer: a text (tokenised with the model's tokenizer),
or token ids. Labels read as the text reads: the piece of the input each token covers, not byte-level or
sentencepiece names like ``Ġlight`` or ``▁light``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import TrilogyError
from ..models import TransformerModel


def encode(model: TransformerModel, text_or_ids: str | Sequence[int] | Tensor, what: str = "the input"
           ) -> tuple[list[int], list[str]]:
    """Token ids and their labels. A text goes through ``model.tokenizer`` when the model has one; without
    one, the text must be the token ids themselves, separated by spaces. Ids (a list or a (T,) / (1, T) tensor)
    are labelled with the tokenizer's decoding of each, or the id."""
    if not isinstance(text_or_ids, str):
        ids = torch.as_tensor(text_or_ids).flatten().tolist()
        labels = [token_label(model, i) for i in ids]
    elif model.tokenizer is not None:
        encoding = model.tokenizer.encode(text_or_ids)
        ids = list(encoding.ids)
        labels = [text_or_ids[start:end].strip() or token_label(model, i) if end > start else token_label(model, i)
                  for (start, end), i in zip(encoding.offsets, ids, strict=True)]
    else:
        try:
            ids = [int(word) for word in text_or_ids.split()]
        except ValueError:
            raise TrilogyError(f"this model has no tokenizer, so {what} must be token ids separated by spaces "
                             f"(e.g. '5 17 42'), got {text_or_ids!r}") from None
        labels = [str(i) for i in ids]
    if not ids:
        raise TrilogyError(f"{what} gives no tokens")
    return ids, labels


def token_label(model: TransformerModel, token_id: int) -> str:
    """One token as text: the tokenizer's decoding of it alone (which drops ``Ġ``/``▁``/``##``), else its
    vocabulary entry with those markers turned into spaces, else the id."""
    tokenizer = model.tokenizer
    if tokenizer is None:
        return str(token_id)
    decoded = tokenizer.decode([token_id], skip_special_tokens=False).strip()
    if decoded and "\ufffd" not in decoded:  # a byte of a multi-byte character decodes to U+FFFD alone
        return decoded
    token = tokenizer.id_to_token(token_id)
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\\n").strip() or token if token else str(token_id)
