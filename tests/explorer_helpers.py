"""Shared by the attention-explorer tests: the data embedded in a view, unpacked, and headless Chromium
(Debian's ``chromium`` through Playwright, which never downloads a browser here)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")
#: one byte per weight: a drawn weight is within half a level of the model's
PACKED = 0.5 / 255 + 1e-6
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def embedded(html: str) -> list[dict]:
    """The data of every explorer in ``html``."""
    found = re.findall(r'<script type="application/json" class="tri-data">(.*?)</script>', html, flags=re.S)
    return [json.loads(text.replace("<\\/", "</")) for text in found]


def weights(kind: dict, layer_index: int) -> torch.Tensor:
    """One included layer's packed weights, unpacked: (H, T, S) in [0, 1]."""
    raw = np.frombuffer(base64.b64decode(kind["weights"][layer_index]), dtype=np.uint8)
    shape = (len(kind["heads"]), len(kind["queries"]), len(kind["keys"]))
    return torch.from_numpy(raw.astype(np.float32) / 255).reshape(shape)


@contextmanager
def browser_page(html_path: Path, functions: dict | None = None):
    """A headless Chromium page on ``html_path``, with ``functions`` {name: Python callable} callable from its
    scripts as ``window.name`` (they answer with a promise); yields (page, script errors, every URL requested)."""
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, accept_downloads=True,
            viewport={"width": 1280, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            for name, function in (functions or {}).items():
                browser.expose_function(name, function)
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(html_path.as_uri())
            yield page, errors, requests
        finally:
            browser.close()


def offline(requests: list[str]) -> bool:
    """Nothing but the file itself (and data: URLs the page makes) was requested."""
    return all(url.startswith(("file://", "data:")) for url in requests)


WORDS = ["<pad>", "</s>", "<unk>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "le", "chat", "est",
         "assis", "sur", "tapis", "un", "chien"]


def word_tokenizer():
    """A word-level tokenizer over WORDS, so that views are labelled with words."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    return tok


def comm_stub(widget):
    """The front end's end of ``widget``'s comm: a function that sends a request as the page does (a custom
    message, through ipywidgets' comm handling) and returns the one reply the widget sends back."""
    replies = []
    widget.comm.send = lambda data=None, metadata=None, buffers=None: replies.append(data)

    def ask(request):
        widget.comm.handle_msg({"content": {"data": {"method": "custom", "content": request}}, "buffers": []})
        assert len(replies) == 1 and replies[0]["method"] == "custom", replies
        return replies.pop()["content"]

    return ask


def widget_page(path: Path, module: str, data: dict, after: str = "") -> Path:
    """Write a page that renders a widget's ES ``module`` as a widget front end does, with a stand-in for its
    model: ``model.get("data")`` is ``data``, and ``model.send(request)`` records the request in
    ``window.sentRequests`` and hands it to the page's ``kernel`` function (which the test binds to Python, see
    ``browser_page``), whose answer comes back as a "msg:custom" event. ``after``: HTML to put after it."""
    source = base64.b64encode(module.encode()).decode("ascii")
    state = json.dumps({"data": data}).replace("</", "<\\/")
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>live explorer</title></head>
<body>
<div id="widget"></div>
<script type="application/json" id="state">{state}</script>
<script type="module">
import widget from "data:text/javascript;base64,{source}";
const state = JSON.parse(document.getElementById("state").textContent), listeners = new Set();
window.sentRequests = [];
const model = {{
  get: name => state[name],
  send: request => {{
    window.sentRequests.push(request);
    window.kernel(request).then(reply => listeners.forEach(listener => listener(reply, [])));
  }},
  on: (event, listener) => {{ if (event === "msg:custom") listeners.add(listener); }},
  off: (event, listener) => listeners.delete(listener),
}};
widget.render({{model, el: document.getElementById("widget")}});
</script>
{after}
</body></html>
""")
    return path
