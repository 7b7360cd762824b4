"""Turning probability maps into masks: the threshold and the two optional rules tuned with it."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .metric import binarize
from .store import Probs


@dataclass(frozen=True)
class Decision:
    threshold: float = 0.5  # a pixel is salt when its probability is above this
    min_area: int = 0  # a predicted mask with fewer pixels is emptied
    empty_cut: float | None = None  # emptied when the image head's P(non-empty) is below this

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        return cls(float(d["threshold"]), int(d.get("min_area", 0)),
                   None if d.get("empty_cut") is None else float(d["empty_cut"]))


def emptied(pred_area: np.ndarray, empty_prob: np.ndarray | None, decision: Decision) -> np.ndarray:
    """Which predictions the rules empty, for areas of any shape (leading axis = images)."""
    out = pred_area < decision.min_area
    if decision.empty_cut is not None and empty_prob is not None:
        cut = (empty_prob < decision.empty_cut).reshape((-1,) + (1,) * (np.ndim(pred_area) - 1))
        out = out | cut
    return out


def masks_from_probs(probs: Probs, decision: Decision) -> np.ndarray:
    masks = binarize(probs.levels, decision.threshold)
    masks[emptied(masks.reshape(len(masks), -1).sum(1), probs.empty_prob, decision)] = False
    return masks
