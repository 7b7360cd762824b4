"""Turning probability maps into masks: the threshold and the two optional rules tuned with it."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import PipelineError
from .metric import binarize
from .paths import ExperimentLayout
from .store import Probs, read_json


@dataclass(frozen=True)
class Decision:
    threshold: float = 0.5  # a pixel is salt when its probability is above this
    min_area: int = 0  # a predicted mask with fewer pixels is emptied
    empty_cut: float | None = None  # emptied when the image head's P(salt) is below this
    rules: tuple[str, ...] = ()  # neighbour rules (lib/neighbours.py) applied after the three above

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rules"] = list(self.rules)
        if not self.rules:  # a decision without rules reads as it did before they existed (records stay valid)
            del out["rules"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        return cls(float(d["threshold"]), int(d.get("min_area", 0)),
                   None if d.get("empty_cut") is None else float(d["empty_cut"]), tuple(d.get("rules", ())))


def emptied(pred_area: np.ndarray, salt_prob: np.ndarray | None, decision: Decision) -> np.ndarray:
    """Which predictions the rules empty, for areas of any shape (leading axis = images)."""
    out = pred_area < decision.min_area
    if decision.empty_cut is not None and salt_prob is not None:
        cut = (salt_prob < decision.empty_cut).reshape((-1,) + (1,) * (np.ndim(pred_area) - 1))
        out = out | cut
    return out


def masks_from_probs(probs: Probs, decision: Decision) -> np.ndarray:
    masks = binarize(probs.levels, decision.threshold)
    masks[emptied(masks.reshape(len(masks), -1).sum(1), probs.salt_prob, decision)] = False
    return masks


def stored_decision(exp: ExperimentLayout) -> Decision:
    """The decision the tune stage chose for an experiment; the plain 0.5 threshold before it has run."""
    if not exp.tune_json.exists():
        return Decision()
    try:
        return Decision.from_dict(read_json(exp.tune_json)["decision"])
    except (KeyError, TypeError, ValueError):
        raise PipelineError(f"{exp.tune_json} lacks a valid decision; rerun the tune stage") from None
