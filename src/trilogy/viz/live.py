"""The explorer as a notebook widget (anywidget): the cell keeps one head of the attention, and the page asks
the kernel for each other layer or head when the user picks it, so what the notebook stores does not grow with
layers x heads x tokens.

The page is explorer.html's, run by the same ``explorer`` function as the self-contained page: only where its
data come from differs. Each request is a custom widget message {kind, layer, head, part}, answered with one
custom message from the maps collected once (``explorer.piece``); nothing travels as widget state but the
opening data, so nothing fetched is saved in the notebook.

Importing this module needs ``anywidget`` (``pip install 'trilogy[notebook]'``); the rest of ``trilogy.viz``
does not.
"""

from __future__ import annotations

import json
import re

import anywidget
import traitlets

from .attention_maps import AttentionMaps
from .explorer import TEMPLATE, explorer_data, piece

BEGIN, END = "// explorer: begin", "// explorer: end"

#: the ES module the widget front end loads; __MARKUP__ is explorer.html without its scripts and data, and the
#: root id is made per display, as ``explorer.fragment`` makes one per fragment
MODULE = """const MARKUP = __MARKUP__;

__EXPLORER__

export default {
  render({ model, el }) {
    const id = `trilogy-attention-${Math.random().toString(16).slice(2, 14)}`;
    el.innerHTML = MARKUP.split("__ROOT__").join(id);
    const listeners = [], relay = message => listeners.forEach(listen => listen(message));
    model.on("msg:custom", relay);
    explorer(el.firstElementChild, structuredClone(model.get("data")),
             {send: request => model.send(request), listen: callback => listeners.push(callback)});
    return () => model.off("msg:custom", relay);
  },
};
"""


def widget_module() -> str:
    """The widget's ES module, from explorer.html: its markup and its ``explorer`` function."""
    template = TEMPLATE.read_text()
    explorer = template[template.index(BEGIN):template.index(END) + len(END)]
    markup = re.sub(r"<script\b.*?</script>\n?", "", template, flags=re.S)
    return MODULE.replace("__MARKUP__", json.dumps(markup)).replace("__EXPLORER__", explorer)


class LiveExplorer(anywidget.AnyWidget):
    """The explorer of ``maps`` as a widget: ``data`` (the widget state a notebook saves) holds each kind's
    first layer's first head; every other piece is a request answered by ``explorer.piece``."""

    _esm = widget_module()
    data = traitlets.Dict().tag(sync=True)

    def __init__(self, maps: AttentionMaps, **settings) -> None:
        """``settings``: ``explorer_data``'s model_name, view, layers, heads, generation and lens."""
        super().__init__(data=explorer_data(maps, live=True, **settings))
        self._maps = maps
        self.on_msg(self._answer)

    def _answer(self, _widget: LiveExplorer, request: object, _buffers: list) -> None:
        self.send(piece(self._maps, self.data, request))
