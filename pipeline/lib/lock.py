"""One run at a time per work folder: an advisory lock on <workdir>/.lock (fcntl, as `flock` in run.sh).

A second run exits at once with one line naming the holder (its pid and command, kept in .lock.holder).
The holder's child processes (run.sh's stages) inherit the lock through the environment instead of
taking it again, once they have seen that it is still held (a child whose run is gone stops with one line);
under torchrun, rank 0 takes it for the whole job.
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from .errors import PipelineError
from .paths import WorkLayout

HELD_ENV = "TGS_LOCKED_WORKDIR"
_held: dict[str, int] = {}  # work folder -> open lock file descriptor, for this process's lifetime


def lock_workdir(root: Path) -> None:
    """Hold the work folder's lock until this process exits; a no-op when this process or its parent
    (run.sh, a fold scheduler) already holds it."""
    key = str(Path(root).resolve())
    if key in _held or int(os.environ.get("RANK", "0")) > 0:
        return  # under torchrun, rank 0 holds it for all ranks
    inherited = os.environ.get(HELD_ENV) == key
    Path(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(WorkLayout(Path(root)).lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if inherited:
            return  # held, by the run that started this stage
        raise PipelineError(f"work folder {root} is in use by {holder(root)}; wait for it to finish, or pass "
                            "another --workdir") from None
    if inherited:  # free: the run that started this stage and held it is gone
        os.close(fd)
        raise PipelineError(f"the run that started this stage on {root} has ended; start the run again")
    _held[key] = fd
    os.environ[HELD_ENV] = key  # children inherit it
    WorkLayout(Path(root)).lock_holder.write_text(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]})\n")


def holder(root: Path) -> str:
    try:
        return WorkLayout(Path(root)).lock_holder.read_text().strip() or "another run"
    except OSError:
        return "another run"


def release_all() -> None:
    """Let go of every lock this process holds (a stage has finished; the process may live on, as a
    notebook kernel does)."""
    for key, fd in list(_held.items()):
        os.close(fd)  # closing the descriptor releases the flock
        del _held[key]
        if os.environ.get(HELD_ENV) == key:
            del os.environ[HELD_ENV]
