"""``trilogy.viz.show``: a model's attention on a text, displayed inline in Jupyter (or saved as a page).

    from trilogy.viz import show
    show(model, "The cat sat on the mat")                        # head view
    show(model, "The cat sat on the mat", view="model")          # every layer x head
    show(t5, "translate: the cat", target="le chat", view="neuron")
    show(gpt, "Once upon a time", generate=10)                   # step through the generated tokens
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import TrilogyError
from ..models import TransformerModel
from .attention_maps import AttentionMaps, attention_maps
from .explorer import explorer_data, fragment, page
from .tokens import encode, token_label

#: what an encoder-decoder's decoder reads without a target: its greedy output, this many tokens
DEFAULT_DECODED = 8


@dataclass
class AttentionView:
    """The explorer for one model and text. Jupyter displays it (``_repr_html_``); ``html`` is the fragment for
    other front ends; ``save`` writes it as a page of its own."""

    html: str
    title: str

    def _repr_html_(self) -> str:
        return self.html

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(page(self.html, self.title))
        return path


def collect(model: TransformerModel, input_ids_or_text: str | Sequence[int] | Tensor,
            target: str | Sequence[int] | Tensor | None = None, generate: int | None = None,
            vector_layers: list[int] | None = None) -> tuple[AttentionMaps, dict | None]:
    """Run the model (after decoding ``generate`` tokens, if asked) and collect its attention.

    Returns the maps and, with ``generate``, {"first": index of the first generated decoder token, "count"}.
    """
    has_source = model.structure.has_source
    if target is not None and not has_source:
        raise TrilogyError(f"a target is for encoder-decoder models; this one is {model.config.arch!r}")
    if generate is not None and (not model.structure.output.causal or target is not None):
        raise TrilogyError("generate= is for decoder-only and encoder-decoder models, without a target")
    if generate is not None and (not isinstance(generate, int) or generate < 1):
        raise TrilogyError(f"generate must be a whole number of tokens >= 1, got {generate!r}")
    ids, labels = encode(model, input_ids_or_text, "the input")
    source = torch.tensor([ids], device=model.device)  # (1, T)
    if has_source:
        target_ids = (model.generate(source, max_new_tokens=generate or DEFAULT_DECODED)[0].tolist()
                      if target is None else [_decoder_start(model), *encode(model, target, "the target")[0]])
        maps = attention_maps(model, source, labels, torch.tensor([target_ids], device=model.device),
                              [token_label(model, i) for i in target_ids], vector_layers)
        generation = {"first": 1, "count": len(target_ids) - 1} if generate else None
        return maps, generation
    generation = None
    if generate:
        full = model.generate(source, max_new_tokens=generate)[0].tolist()  # prompt + new tokens
        generation = {"first": len(ids), "count": len(full) - len(ids)}
        labels = labels + [token_label(model, i) for i in full[len(ids):]]
        source = torch.tensor([full], device=model.device)
    return attention_maps(model, source, labels, vector_layers=vector_layers), generation


def _decoder_start(model: TransformerModel) -> int:
    start = model.config.decoder_start_token_id
    return start if start is not None else (model.config.pad_token_id or 0)


def show(model: TransformerModel, input_ids_or_text: str | Sequence[int] | Tensor,
         target: str | Sequence[int] | Tensor | None = None, view: str = "head", layers: list[int] | None = None,
         heads: list[int] | None = None, generate: int | None = None, name: str | None = None) -> AttentionView:
    """The attention explorer for ``model`` on a text (tokenised with ``model.tokenizer``) or token ids.

    Args:
        target: encoder-decoder only, the decoder's text or ids (default: its greedy output, 8 tokens).
        view: the view it opens on: "head" (heads overlaid in colours), "model" (every layer x head) or
            "neuron" (one head's queries, keys and their products).
        layers, heads: only these (None: all), to keep long inputs or large models light.
        generate: decode this many tokens greedily first, and step through them (decoder-only and
            encoder-decoder).
        name: what to call the model in the view (default: its class and size).
    """
    maps, generation = collect(model, input_ids_or_text, target, generate, vector_layers=layers)
    name = name or f"{type(model).__name__} ({model.config.n_layers} layers x {model.config.n_heads} heads)"
    data = explorer_data(maps, name, view, layers, heads, generation)
    return AttentionView(fragment(data), f"Attention of {name}")

