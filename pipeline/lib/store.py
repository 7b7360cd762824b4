"""Writing artifacts safely, and the on-disk format of probability maps.

Every artifact is written to a temporary file beside its final path and renamed into place, so an
interrupted stage never leaves a half-written file that a later stage would trust.

Probability maps (out-of-fold and test) share one format, `*.npz` with:
  ids        (N,)          str     image ids
  probs      (N, 101, 101) uint8   round(255 * p): 1/255 resolution is far below what a threshold needs
  salt_prob  (N,)          float32 optional: the image-level head's probability that the image has salt
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PipelineError, os_error

LEVELS = 255


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


def to_levels(probs: np.ndarray) -> np.ndarray:
    """Float probabilities in [0, 1] -> uint8 levels 0..255."""
    return np.clip(np.rint(np.asarray(probs, dtype=np.float32) * LEVELS), 0, LEVELS).astype(np.uint8)


def from_levels(levels: np.ndarray) -> np.ndarray:
    return levels.astype(np.float32) / LEVELS


@dataclass
class Probs:
    """Probability maps of a set of images, as stored on disk."""

    ids: np.ndarray
    levels: np.ndarray  # uint8 (N, 101, 101)
    salt_prob: np.ndarray | None = None  # float32 (N,), P(salt in the image) from the image head

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        if self.levels.dtype != np.uint8 or self.levels.ndim != 3 or len(self.levels) != len(self.ids):
            raise ValueError("Probs needs uint8 levels of shape (N, H, W) matching the ids")

    @classmethod
    def concat(cls, parts: list["Probs"]) -> "Probs":
        """The rows of several sets in order; the head's output only when every part has it."""
        heads = [p.salt_prob for p in parts]
        return cls(np.concatenate([p.ids for p in parts]), np.concatenate([p.levels for p in parts]),
                   None if any(h is None for h in heads) else np.concatenate(heads))

    def subset(self, ids) -> "Probs":
        """The rows for `ids`, in that order; an id not stored here is an error naming it."""
        index = {i: n for n, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise PipelineError(f"{len(missing)} ids have no stored probabilities (first: {missing[0]})")
        rows = np.array([index[i] for i in ids], dtype=np.int64)
        head = None if self.salt_prob is None else self.salt_prob[rows]
        return Probs(np.asarray(ids), self.levels[rows], head)


def save_probs(path: Path, probs: Probs) -> None:
    arrays = {"ids": probs.ids, "probs": probs.levels}
    if probs.salt_prob is not None:
        arrays["salt_prob"] = probs.salt_prob.astype(np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_probs(path: Path) -> Probs:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} is missing; run `python -m pipeline.predict` for this experiment first")
    try:
        with np.load(path, allow_pickle=False) as data:
            head = data["salt_prob"] if "salt_prob" in data.files else None
            return Probs(data["ids"], data["probs"], head)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise PipelineError(f"{path} is not a valid probability file ({err}); rerun the predict stage") from None
