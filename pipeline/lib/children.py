"""Child processes that end with the run that started them: killed (even by SIGKILL, which no handler sees)
or interrupted (Ctrl-C, a notebook's interrupt), it takes its stages with it, so no stage trains on unlocked
beside a second run.

Linux's PR_SET_PDEATHSIG asks the kernel to send the child SIGTERM when its parent dies; torchrun passes
SIGTERM on to its workers. Elsewhere the interrupt still stops the child; a parent's SIGKILL does not.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)  # loaded here, in the parent: after a fork, only the call
    except OSError:
        return None


LIBC = _libc()


def dies_with(parent: int):
    """What the child runs between fork and exec: ask for SIGTERM at the parent's death, and go at once if
    the parent is gone already (it died before the request was made)."""
    def before_exec() -> None:
        if LIBC is not None and hasattr(LIBC, "prctl"):
            LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return before_exec


def start(command: list[str], **popen) -> subprocess.Popen:
    return subprocess.Popen(command, preexec_fn=dies_with(os.getpid()), **popen)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then after `grace` seconds SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
