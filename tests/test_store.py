"""Artifacts written atomically and durably (lib/store.py)."""
import errno
import os
import shutil
import subprocess
import sys

import pytest

from pipeline.lib import store
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import REPO


def test_an_artifact_is_flushed_before_its_name_and_its_folder_after(tmp_path, monkeypatch):
    """After a power cut a record names either the old file or the whole new one, never an empty one."""
    flushed = []
    monkeypatch.setattr(store, "fsync", lambda path: flushed.append((str(path), (tmp_path / "r.json").exists())))
    store.write_json(tmp_path / "r.json", {"a": 1})
    (temporary, renamed_yet), (folder, renamed_then) = flushed
    assert temporary.startswith(str(tmp_path / ".r.json.")) and not renamed_yet
    assert folder == str(tmp_path) and renamed_then
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_failed_write_leaves_the_old_artifact_and_says_why_in_one_line(tmp_path):
    store.write_text(tmp_path / "a.txt", "old")
    with pytest.raises(PipelineError, match=rf"no space left on the disk for {tmp_path / 'a.txt'}; free some space"):
        with store.atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert (tmp_path / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def can_mount() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="a small disk needs `unshare -m` and mount (root)")
def test_a_checkpoint_on_a_really_full_disk_is_one_line(tmp_path):
    """torch.save says a full disk as a RuntimeError ("unexpected pos"): still the no-space line."""
    folder = tmp_path / "small"
    folder.mkdir()
    code = ("import torch; from pathlib import Path; from pipeline.lib.cli import run_stage; "
            "from pipeline.lib.checkpoints import save_checkpoint; "
            f"run_stage(lambda argv: save_checkpoint(Path({str(folder / 'last.pt')!r}), model={{'w': torch.zeros(100000)}}))")
    script = f"mount -t tmpfs -o size=200k tmpfs {folder} && {sys.executable} -c \"{code}\"; echo left: $(ls -A {folder})"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stderr.strip() == (f"error: no space left on the disk for {folder / 'last.pt'}; free some space, or "
                                   "pass --workdir DIR on another disk, then run again (everything finished before is kept)")
    assert done.stdout.strip() == "left:"  # no half-written file


@pytest.mark.parametrize("code, reading, words", [
    (errno.ENOSPC, False, "no space left on the disk for {f}; free some space"),
    (errno.EROFS, False, "cannot write {f} (Read-only file system); pass --workdir DIR"),
    (errno.EACCES, False, "cannot write {f} (Permission denied); pass --workdir DIR"),
    (errno.EACCES, True, "cannot read {f} (Permission denied); make it readable for this user"),
    (errno.ENOENT, False, "{f} is gone (No such file or directory): it vanished while the stage ran"),
    (errno.EIO, False, "Input/output error on {f}; check the disk"),
])
def test_the_operating_systems_errors_in_words(tmp_path, monkeypatch, code, reading, words):
    from pipeline.lib.errors import os_error
    target = tmp_path / "train.csv"
    target.write_text("id\n")
    monkeypatch.setattr(os, "access", lambda path, mode: not reading)  # root may read anything: pretend
    assert os_error(OSError(code, os.strerror(code), str(target))).startswith(words.format(f=target))
