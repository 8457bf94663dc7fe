"""``trilogy.viz.show``: a model's attention on a text, displayed inline in Jupyter (or saved as a page).

    from trilogy.viz import show
    show(model, "The cat sat on the mat")                        # head view
    show(model, "The cat sat on the mat", view="model")          # every layer x head
    show(t5, "translate: the cat", target="le chat", view="neuron")
    show(gpt, "Once upon a time", generate=10)                   # step through the generated tokens
    show(gpt, "The capital of France is", view="lens")           # the logit lens
    show(big_model, long_text, live=True)                        # the kernel sends each layer or head shown
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import torch
from torch import Tensor

from ..errors import TrilogyError
from ..models import TransformerModel
from .attention_maps import AttentionMaps, attention_maps
from .explorer import explorer_data, fragment, packed_size, page
from .lens_view import explorer_lens
from .tokens import encode, token_label

#: what an encoder-decoder's decoder reads without a target: its greedy output, this many tokens
DEFAULT_DECODED = 8
#: in a Jupyter kernel with anywidget, a view whose page would carry more bytes of data than this is live; the
#: live view's own output stays under it (tests/test_viz_live.py)
LIVE_ABOVE = 2_000_000


class AttentionView:
    """The explorer for one model and text. Jupyter displays it: the self-contained fragment (``html``), or,
    when live, the widget (``widget``) that asks the kernel for each layer and head it shows. Either way
    ``html`` is the self-contained fragment for other front ends and ``save`` writes it as a page of its own
    (a live view packs them when asked)."""

    def __init__(self, maps: AttentionMaps, title: str, settings: dict, live: bool) -> None:
        """``settings``: ``explorer_data``'s keyword arguments but ``live``."""
        self.title = title
        if live:
            from .live import LiveExplorer

            self.widget: LiveExplorer | None = LiveExplorer(maps, **settings)
            self._maps, self._settings, self._html = maps, settings, None
        else:  # the maps are packed now, and not kept
            self.widget, self._html = None, fragment(explorer_data(maps, **settings))

    @property
    def html(self) -> str:
        if self._html is None:
            self._html = fragment(explorer_data(self._maps, **self._settings))
        return self._html

    def __repr__(self) -> str:  # Jupyter stores it as the output's text/plain: not the page again
        return f"<{self.title}: {'self-contained' if self.widget is None else 'live'} attention explorer>"

    def _repr_html_(self) -> str | None:
        return self.html if self.widget is None else None

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict] | None:
        """A live view's output: the widget, with a line of HTML for front ends without widgets (a notebook
        viewer, a kernel that is gone); None for a self-contained one (Jupyter then takes ``_repr_html_``)."""
        if self.widget is None:
            return None
        data, metadata = self.widget._repr_mimebundle_()
        note = (f"<p>{escape(self.title)}: a live attention explorer, drawn by the kernel that made it. "
                "Run the cell again, or keep it with <code>view.save(path)</code>.</p>")
        return {**data, "text/plain": repr(self), "text/html": note}, metadata

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(page(self.html, self.title))
        return path


@dataclass
class Inputs:
    """What the explorer runs the model on, as ids and labels: the text (an encoder-decoder's source) and an
    encoder-decoder's decoder input; with ``generate``, {"first": index of the first generated decoder token,
    "count"}."""

    ids: Tensor  # (1, T)
    labels: list[str]
    target_ids: Tensor | None = None  # (1, T_tgt)
    target_labels: list[str] | None = None
    generation: dict | None = None


def collect(model: TransformerModel, input_ids_or_text: str | Sequence[int] | Tensor,
            target: str | Sequence[int] | Tensor | None = None, generate: int | None = None,
            vector_layers: list[int] | None = None) -> tuple[AttentionMaps, dict | None]:
    """Run the model (after decoding ``generate`` tokens, if asked) and collect its attention.

    Returns the maps and, with ``generate``, {"first": index of the first generated decoder token, "count"}.
    """
    inputs = prepare(model, input_ids_or_text, target, generate)
    return _maps(model, inputs, vector_layers), inputs.generation


def _maps(model: TransformerModel, inputs: Inputs, vector_layers: list[int] | None) -> AttentionMaps:
    return attention_maps(model, inputs.ids, inputs.labels, inputs.target_ids, inputs.target_labels, vector_layers)


def prepare(model: TransformerModel, input_ids_or_text: str | Sequence[int] | Tensor,
            target: str | Sequence[int] | Tensor | None = None, generate: int | None = None) -> Inputs:
    """The ids and labels to run the model on (``collect``), after decoding ``generate`` tokens if asked."""
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
        return Inputs(source, labels, torch.tensor([target_ids], device=model.device),
                      [token_label(model, i) for i in target_ids],
                      {"first": 1, "count": len(target_ids) - 1} if generate else None)
    if not generate:
        return Inputs(source, labels)
    full = model.generate(source, max_new_tokens=generate)[0].tolist()  # prompt + new tokens
    return Inputs(torch.tensor([full], device=model.device), labels + [token_label(model, i) for i in full[len(ids):]],
                  generation={"first": len(ids), "count": len(full) - len(ids)})


def _decoder_start(model: TransformerModel) -> int:
    start = model.config.decoder_start_token_id
    return start if start is not None else (model.config.pad_token_id or 0)


def show(model: TransformerModel, input_ids_or_text: str | Sequence[int] | Tensor,
         target: str | Sequence[int] | Tensor | None = None, view: str = "head", layers: list[int] | None = None,
         heads: list[int] | None = None, generate: int | None = None, name: str | None = None,
         lens: bool = False, lens_target: str | int | None = None, live: bool | None = None) -> AttentionView:
    """The attention explorer for ``model`` on a text (tokenised with ``model.tokenizer``) or token ids.

    Args:
        target: encoder-decoder only, the decoder's text or ids (default: its greedy output, 8 tokens).
        view: the view it opens on: "head" (heads overlaid in colours), "model" (every layer x head),
            "neuron" (one head's queries, keys and their products) or "lens" (the logit lens).
        layers, heads: only these (None: all), to keep long inputs or large models light.
        generate: decode this many tokens greedily first, and step through them (decoder-only and
            encoder-decoder).
        name: what to call the model in the view (default: its class and size).
        lens: include the logit-lens view (``view="lens"`` does too): each layer's top token at each position,
            coloured by the probability of ``lens_target`` (a token, text or id; default: the next token where
            the output stack is causal, the token itself in an encoder).
        live: display as a notebook widget that asks the kernel for each layer and head it shows, so that the
            notebook stores one head whatever the size (needs ``anywidget``). None: live in a Jupyter kernel
            with anywidget when the self-contained page would carry more than ``LIVE_ABOVE`` bytes of data.
    """
    inputs = prepare(model, input_ids_or_text, target, generate)
    maps = _maps(model, inputs, layers)
    name = name or f"{type(model).__name__} ({model.config.n_layers} layers x {model.config.n_heads} heads)"
    lensed = (explorer_lens(model, inputs.ids, inputs.labels, inputs.target_ids, inputs.target_labels, lens_target)
              if lens or view == "lens" else None)
    settings = {"model_name": name, "view": view, "layers": layers, "heads": heads, "generation": inputs.generation,
                "lens": lensed}
    return AttentionView(maps, f"Attention of {name}", settings, _is_live(live, maps, layers, heads))


def _is_live(live: bool | None, maps: AttentionMaps, layers: list[int] | None, heads: list[int] | None) -> bool:
    if live is None:
        return _in_kernel() and packed_size(maps, layers, heads) > LIVE_ABOVE and _has_anywidget()
    if live and not _has_anywidget():
        raise TrilogyError("live=True needs anywidget: pip install 'trilogy[notebook]'")
    return live


def _in_kernel() -> bool:
    """In a Jupyter kernel, where a widget can talk to the kernel (not a plain Python or IPython terminal)."""
    ipython = sys.modules.get("IPython")
    return getattr(ipython.get_ipython() if ipython else None, "kernel", None) is not None


def _has_anywidget() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True

