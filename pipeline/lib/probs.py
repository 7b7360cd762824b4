"""Probability maps, the data every stage after training hands on (`Probs`), and their one on-disk format.

Out-of-fold and test probabilities share one format, `*.npz` with:
  ids        (N,)          str     image ids
  probs      (N, 101, 101) uint8   round(255 * p): 1/255 resolution is far below what a threshold needs
  salt_prob  (N,)          float32 optional: the image-level head's probability that the image has salt
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .store import atomic_path

LEVELS = 255


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
