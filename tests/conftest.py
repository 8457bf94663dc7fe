import pytest
import torch

import trilogy

TINY = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(name: str, **changes) -> trilogy.TransformerModel:
    """A tiny preset in eval mode (dropout off)."""
    return trilogy.build(name, **changes).eval()
