"""Kaggle's run-length encoding: `start length` pairs, 1-indexed, pixels numbered down columns
(top to bottom, then left to right); an empty mask is the empty string."""
from __future__ import annotations

import numpy as np

SHAPE = (101, 101)


def _runs(masks: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a batch (N, H, W): per run, its image row, 1-indexed start and length."""
    n, pixels = len(masks), masks[0].size if len(masks) else 0
    rows, starts, lengths = [], [], []
    for a in range(0, n, chunk):
        block = masks[a:a + chunk].astype(bool, copy=False)
        # each image's pixels column by column, then one False that closes its last run
        line = np.zeros((len(block), pixels + 1), bool)
        line[:, :-1] = block.transpose(0, 2, 1).reshape(len(block), -1)
        line = np.concatenate([[False], line.ravel()])
        edges = np.flatnonzero(line[1:] != line[:-1])  # alternately a run's start and its end
        first, end = edges[0::2], edges[1::2]
        rows.append(a + first // (pixels + 1))
        starts.append(first % (pixels + 1) + 1)
        lengths.append(end - first)
    if not rows:
        return (np.zeros(0, np.int64),) * 3
    return np.concatenate(rows), np.concatenate(starts), np.concatenate(lengths)


def encode_many(masks: np.ndarray) -> list[str]:
    """Encode a batch of masks (N, H, W) at once."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"encode_many needs masks of shape (N, H, W), got {masks.shape}")
    rows, starts, lengths = _runs(masks)
    numbers = np.stack([starts, lengths], axis=1).ravel().tolist()
    bounds = (2 * np.searchsorted(rows, np.arange(len(masks) + 1))).tolist()
    return [" ".join(map(str, numbers[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


def encode(mask: np.ndarray) -> str:
    return encode_many(np.asarray(mask)[None])[0]


def decode(rle: str, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Decode one RLE string to a bool mask; ValueError says what is malformed."""
    height, width = shape
    total = height * width
    text = "" if rle is None or (isinstance(rle, float) and np.isnan(rle)) else str(rle).strip()
    flat = np.zeros(total, dtype=bool)
    if not text:
        return flat.reshape(width, height).T
    try:
        numbers = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):  # a float, a word, or an integer past 64 bits
        raise ValueError(f"RLE has a token that is not an integer of 64 bits: {text[:40]!r}") from None
    if len(numbers) % 2:
        raise ValueError("RLE has an odd number of values; it must be `start length` pairs")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    if (starts < 0).any() or (lengths < 1).any():
        raise ValueError("RLE starts must be >= 1 and lengths >= 1")
    if (starts >= total).any() or (lengths > total).any():  # checked before any sum can overflow
        raise ValueError(f"RLE runs start or run past pixel {total}")
    ends = starts + lengths
    if ends[-1] > total or (starts[1:] < ends[:-1]).any():
        raise ValueError(f"RLE runs overlap, are out of order or run past pixel {total}")
    delta = np.zeros(total + 1, dtype=np.int32)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    flat[:] = np.cumsum(delta[:-1]) > 0
    return flat.reshape(width, height).T
