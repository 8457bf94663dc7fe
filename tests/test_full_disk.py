"""A full disk during a save: the run stops with one line that names the folder and the checkpoint ``--resume``
continues from, leaves no temporary file, keeps every complete checkpoint, and once there is space again resumes
to bitwise the weights of a run that never stopped. The top-level model files are hard links, not second copies.

The disk fills up by simulation: the write at each point of a save raises OSError ENOSPC (EDQUOT for fsync)
after putting part of its bytes on disk. A small real filesystem needs root (a loop mount) on these machines.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import matplotlib.figure
import pytest
import torch

import trilogy
from trilogy.cli import main
from trilogy.convert import shards
from trilogy.convert.files import write_json
from trilogy.data import train_tokenizer
from trilogy.errors import DiskFullError
from trilogy.train.state import (
    MODEL_FILES,
    checkpoint_dir,
    checkpoint_steps,
    load_training_state,
    publish,
    save_checkpoint,
    save_training_state,
)

from .train_helpers import train_args, weights, write_text

OPTIONS = dict(max_steps=8, save_every=2, keep_last=1, eval_every=0)  # saves at steps 2, 4, 6, 8


def full(number: int = errno.ENOSPC) -> OSError:
    return OSError(number, os.strerror(number))


def temporary_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if "tmp" in path.name)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The text, a tokenizer trained once (so that every run shares it), and the weights of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("full_disk")
    data = write_text(folder / "text.txt", chars=20_000)
    tokenizer = folder / "tokenizer.json"
    train_tokenizer("decoder", [data.read_text()], 300).save(str(tokenizer))
    options = dict(OPTIONS, tokenizer=str(tokenizer))
    reference = folder / "reference"
    assert main(train_args(reference, data, "decoder", **options)) == 0
    return data, options, reference


def test_the_top_level_files_are_hard_links_to_the_latest_checkpoint(run):
    _, _, reference = run
    latest = checkpoint_dir(reference, checkpoint_steps(reference)[-1])
    for name in MODEL_FILES:
        top, kept = (reference / name).stat(), (latest / name).stat()
        assert top.st_ino == kept.st_ino and top.st_nlink == 2, name
    assert temporary_files(reference) == []


def fake_checkpoint(folder: Path, content: str) -> Path:
    folder.mkdir(parents=True)
    for name in MODEL_FILES:
        (folder / name).write_text(f"{name} {content}")
    return folder


def test_publish_links_replaces_and_survives_the_checkpoint(tmp_path):
    first = fake_checkpoint(tmp_path / "checkpoints" / "step-00000001", "one")
    publish(first, tmp_path)
    publish(first, tmp_path)  # again, as a resumed run does: nothing to do, no temporary file left
    assert all((tmp_path / name).stat().st_ino == (first / name).stat().st_ino for name in MODEL_FILES)
    second = fake_checkpoint(tmp_path / "checkpoints" / "step-00000002", "two")
    publish(second, tmp_path)
    shutil.rmtree(first)
    shutil.rmtree(second)  # the links keep the files when the checkpoints are pruned
    assert [(tmp_path / name).read_text() for name in MODEL_FILES] == [f"{name} two" for name in MODEL_FILES]
    assert temporary_files(tmp_path) == []


def test_publish_copies_where_the_filesystem_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    checkpoint = fake_checkpoint(tmp_path / "checkpoints" / "step-00000001", "one")
    publish(checkpoint, tmp_path)
    for name in MODEL_FILES:
        assert (tmp_path / name).read_text() == f"{name} one"
        assert (tmp_path / name).stat().st_ino != (checkpoint / name).stat().st_ino
    assert temporary_files(tmp_path) == []


def test_saving_over_a_published_file_leaves_the_checkpoint_alone(tmp_path):
    checkpoint = fake_checkpoint(tmp_path / "checkpoints" / "step-00000001", "one")
    publish(checkpoint, tmp_path)
    write_json({"changed": True}, tmp_path / "config.json")
    assert (checkpoint / "config.json").read_text() == "config.json one"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, where every write finds no space")
def test_the_training_state_reports_a_full_disk_as_enospc():
    with pytest.raises(OSError) as raised:  # torch's own writer would say RuntimeError, without the errno
        save_training_state({"moments": torch.zeros(100_000)}, Path("/dev/full"))
    assert raised.value.errno == errno.ENOSPC


def test_a_full_disk_keeps_older_checkpoints_until_the_new_one_is_complete(tmp_path):
    def save_files(folder):
        (folder / "model.safetensors").write_bytes(b"weights")

    save_checkpoint(tmp_path, 1, save_files, {"step": 1}, keep_last=1, best_step=None)

    def no_space(folder):
        (folder / "model.safetensors").write_bytes(b"wei")
        raise full(errno.EDQUOT)

    with pytest.raises(DiskFullError, match=r"the disk is full \(Disk quota exceeded\) saving step 2"):
        save_checkpoint(tmp_path, 2, no_space, {"step": 2}, keep_last=1, best_step=None)
    assert checkpoint_steps(tmp_path) == [1] and temporary_files(tmp_path) == []


def partly_then_full(file: Path, data: bytes = b"\0" * 64) -> None:
    """What a write that runs out of space leaves: the start of the file, then ENOSPC."""
    Path(file).write_bytes(data)
    raise full()


def fill_the_disk(monkeypatch: pytest.MonkeyPatch, where: str, out: Path, step: int) -> None:
    """Make the save of checkpoint ``step`` find the disk full at ``where``."""
    saving = f".tmp-step-{step:08d}"
    if where == "weights":
        write_safetensors = shards.write_safetensors

        def weights_write(tensors, file, metadata=None):
            if Path(file).parent.name == saving:
                partly_then_full(file)
            write_safetensors(tensors, file, metadata)

        monkeypatch.setattr(shards, "write_safetensors", weights_write)
    elif where == "training state":
        torch_save = torch.save

        def state_write(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("step") == step:
                f.write(b"PK\x03\x04" + b"\0" * 60)  # the start of the archive
                raise full()
            torch_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", state_write)
    elif where == "fsync":
        fsync = os.fsync

        def quota_at_fsync(fd):
            if (out / "checkpoints" / saving).exists():
                raise full(errno.EDQUOT)  # NFS reports a full quota when the data is flushed
            fsync(fd)

        monkeypatch.setattr(os, "fsync", quota_at_fsync)
    elif where == "publish":  # a filesystem without hard links, where the copies need space
        copyfile = shutil.copyfile

        def no_links(source, target):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))

        def copy_running_out(source, target):
            if Path(source).parent.name == f"step-{step:08d}" and Path(source).name == "model.safetensors":
                partly_then_full(target)
            return copyfile(source, target)

        monkeypatch.setattr(os, "link", no_links)
        monkeypatch.setattr(shutil, "copyfile", copy_running_out)
    elif where == "loss curve":  # past the checkpoint: the command reports it the same way
        savefig = matplotlib.figure.Figure.savefig

        def loss_curve_write(self, file, *args, **kwargs):
            if checkpoint_steps(out)[-1:] == [step]:
                partly_then_full(file)
            savefig(self, file, *args, **kwargs)

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", loss_curve_write)


@pytest.mark.parametrize(("where", "step", "kept", "resumes_from"), [
    ("weights", 2, [], None),
    ("weights", 6, [4], 4),
    ("training state", 6, [4], 4),
    ("fsync", 6, [4], 4),
    ("publish", 6, [4, 6], 6),  # step 6 was complete: it is kept, unpruned, and resumed from
    ("loss curve", 6, [6], 6),
])
def test_a_full_disk_stops_in_one_line_keeps_the_checkpoints_and_resumes_bitwise(
        run, tmp_path, capsys, where, step, kept, resumes_from):
    data, options, reference = run
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        fill_the_disk(monkeypatch, where, out, step)
        assert main(train_args(out, data, "decoder", **options)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line and not line.startswith("\r")]  # "\r": the progress bar
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("trilogy train: error: the disk is full (") and str(out) in err, err
    if resumes_from is None:
        assert f"--resume {out} starts again from step 0 (no checkpoint is complete yet)" in err, err
    else:
        assert f"--resume {out} continues from step {resumes_from} ({checkpoint_dir(out, resumes_from)})" in err
    assert temporary_files(out) == []
    assert checkpoint_steps(out) == kept
    for saved in kept:  # complete: the weights load and the training state reads
        trilogy.from_pretrained(checkpoint_dir(out, saved))
        assert load_training_state(checkpoint_dir(out, saved))["step"] == saved


    assert main(["train", "--resume", str(out), "--threads", "1"]) == 0  # with space again
    expected, resumed = weights(reference), weights(out)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    assert temporary_files(out) == []


@pytest.mark.parametrize("name", [".tokenizer.json.tmp", ".run.json.tmp"])
def test_a_disk_full_before_the_first_step_stops_in_one_line_without_temporary_files(
        run, tmp_path, capsys, monkeypatch, name):
    data, options, _ = run
    out = tmp_path / "run"
    write_text_of_path = Path.write_text

    def write_running_out(self, text, *args, **kwargs):
        if self.name == name:
            partly_then_full(self)
        return write_text_of_path(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_running_out)
    assert main(train_args(out, data, "decoder", **options)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("trilogy train: error: the disk is full (") and "run the command again" in err, err
    assert temporary_files(out) == []
