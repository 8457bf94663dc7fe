import huggingface_hub.constants
import pytest
import torch

import trilogy

TINY = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch, tmp_path_factory):
    """Names that are no folder are looked up in an empty Hugging Face cache, offline: tests never reach the
    network or the user's cache (``tests/test_hub_cache.py`` points it at caches it builds)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def tiny(name: str, **changes) -> trilogy.TransformerModel:
    """A tiny preset in eval mode (dropout off)."""
    return trilogy.build(name, **changes).eval()
