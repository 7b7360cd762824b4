"""Writing artifacts safely, and reading JSON records.

Every artifact is written to a temporary file beside its final path and renamed into place, so an
interrupted stage never leaves a half-written file that a later stage would trust.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import PipelineError, os_error


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds, durably: the
    file is fsynced before the rename and its folder after it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs follow the umask like any file
        fsync(tmp)  # the bytes on disk before the name points at them: after a power cut, old file or new
        os.replace(tmp, path)
        fsync(path.parent)  # the rename itself on disk
    except (OSError, RuntimeError) as err:
        errno_ = err.errno if isinstance(err, OSError) else errno.ENOSPC if disk_full(path.parent) else None
        if errno_ is None:  # a RuntimeError of the writer with space left: not the disk's doing
            raise
        raise PipelineError(os_error(OSError(errno_, getattr(err, "strerror", None) or os.strerror(errno_),
                                             str(path)))) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def disk_full(folder: Path) -> bool:
    """torch.save reports a full disk as a RuntimeError ("unexpected pos"): the free space tells."""
    return shutil.disk_usage(folder).free < 2 ** 20




def fsync(path) -> None:
    """Flush a file's (or a folder's entries') writes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(folder: Path) -> None:
    """Delete the temporary files that saves killed mid-way (SIGKILL, power loss) left in `folder`."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; run the stage that writes it first") from None
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path} is not valid JSON ({err}); delete it and rerun its stage") from None
