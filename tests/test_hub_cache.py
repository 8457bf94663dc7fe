"""Checkpoints by name from the Hugging Face cache: a cache folder in huggingface_hub's layout
(``models--OWNER--NAME/blobs``, ``snapshots/HASH/`` linking to the blobs, ``refs/main``), loaded offline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import trilogy
from trilogy.cli import main

from .convert_helpers import perturb

MAIN, OLD = "1" * 40, "2" * 40  # commit hashes
SRC = Path(__file__).resolve().parents[1] / "src"


def add_snapshot(cache: Path, repo: str, commit: str, folder: Path, refs: tuple[str, ...] = ()) -> None:
    """Put the files of ``folder`` into ``cache`` as huggingface_hub stores a downloaded revision."""
    owner, name = repo.split("/")
    storage = cache / f"models--{owner}--{name}"
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)


def llama(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                         num_attention_heads=4)).eval()
    perturb(model, seed=seed)
    return model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache holding owner/tiny-llama at two commits: MAIN (refs/main) and OLD (reachable by hash only)."""
    cache = tmp_path_factory.mktemp("hub")
    for seed, commit, refs in ((0, MAIN, ("main",)), (1, OLD, ())):
        folder = tmp_path_factory.mktemp(f"llama{seed}")
        llama(seed).save_pretrained(folder)
        add_snapshot(cache, "owner/tiny-llama", commit, folder, refs)
    return cache


@pytest.fixture
def offline(cache, monkeypatch):
    """huggingface_hub pointed at the test cache, offline, as HF_HUB_CACHE and HF_HUB_OFFLINE=1 set it."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def logits(model):
    with torch.no_grad():
        out = model(torch.tensor([[1, 5, 7, 2]]))
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.parametrize("revision, seed", [(None, 0), ("main", 0), (MAIN, 0), (OLD, 1)])
def test_loads_by_name_and_revision(offline, revision, seed):
    model = trilogy.from_pretrained("owner/tiny-llama", revision=revision)
    torch.testing.assert_close(logits(model), logits(llama(seed)), rtol=1e-5, atol=1e-5)


def test_a_name_nowhere_is_one_line_saying_where_it_looked(offline):
    with pytest.raises(FileNotFoundError) as caught:
        trilogy.from_pretrained("owner/absent")
    message = str(caught.value)
    assert "'owner/absent'" in message and str(offline) in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message
    with pytest.raises(FileNotFoundError, match="at revision 'v9'"):
        trilogy.from_pretrained("owner/tiny-llama", revision="v9")


def test_paths_that_are_no_names_are_folders(offline, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder at"):
        trilogy.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no checkpoint folder at"):
        trilogy.from_pretrained("./owner/tiny-llama")
    with pytest.raises(ValueError, match="revision='main' selects a version of a Hugging Face model"):
        trilogy.from_pretrained(tmp_path, revision="main")


def test_cli_takes_names(offline, capsys):
    assert main(["info", "owner/tiny-llama", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "LlamaForCausalLM" and info["path"].endswith(f"snapshots/{MAIN}")
    assert main(["size", "owner/tiny-llama", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert main(["info", "owner/absent"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("trilogy info: error: 'owner/absent' is neither a folder nor a model")
    assert error.count("\n") == 1


def test_environment_variables_in_a_fresh_process(cache):
    """What a user does: HF_HUB_CACHE and HF_HUB_OFFLINE=1 in the environment, a name in the call."""
    script = ("import json, torch, trilogy; m = trilogy.from_pretrained('owner/tiny-llama');"
              "print(json.dumps(m(torch.tensor([[1, 5, 7, 2]]))[0, -1, :4].tolist()))")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SRC),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    torch.testing.assert_close(torch.tensor(json.loads(result.stdout)), logits(llama(0))[0, -1, :4],
                               rtol=1e-5, atol=1e-5)
