"""One run at a time per work folder: an advisory lock on <workdir>/.lock (fcntl, as `flock` in run.sh).

A second run exits at once with one line naming the holder (its pid and command, kept in .lock.holder).
The holder's child processes (run.sh's stages, parallel fold workers) inherit the lock through the
environment instead of taking it again.
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from .errors import PipelineError

HELD_ENV = "TGS_LOCKED_WORKDIR"
_held: dict[str, int] = {}  # work folder -> open lock file descriptor, for this process's lifetime


def lock_workdir(root: Path) -> None:
    """Hold the work folder's lock until this process exits; a no-op when this process or its parent
    (run.sh, a fold scheduler) already holds it."""
    key = str(Path(root).resolve())
    if key in _held or os.environ.get(HELD_ENV) == key:
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(root) / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PipelineError(f"work folder {root} is in use by {holder(root)}; wait for it to finish, or pass "
                            "another --workdir") from None
    _held[key] = fd
    os.environ[HELD_ENV] = key  # children inherit it
    (Path(root) / ".lock.holder").write_text(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]})\n")


def holder(root: Path) -> str:
    try:
        return (Path(root) / ".lock.holder").read_text().strip() or "another run"
    except OSError:
        return "another run"
