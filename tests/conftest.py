import os

import huggingface_hub.constants
import pytest
import torch

import trilogy

TINY = ["tiny-bert", "tiny-gpt2", "tiny-t5", "tiny-llama"]


def pytest_configure(config):
    """``pytest -n 2`` on 2 cores: each worker would start torch's default of one thread per core, and the
    workers' OpenMP threads, spinning while they wait for each other, then slow both by 10-50x (a tiny demo's
    2-second unit ran into its 32-second deadline). Each worker gets its share of the cores; subprocesses the
    tests start inherit it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


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


@pytest.fixture
def one_thread():
    """One torch thread for a test of tiny models, where a second thread only adds synchronisation (costly on a
    busy machine); a module asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
