"""Turning probability maps into masks: the threshold and the optional rules tuned with it (minimum area, the
image head's cut, and the near-full masks that overrule the cut)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import PipelineError
from .metric import binarize
from .paths import ExperimentLayout
from .probs import Probs
from .store import read_json


@dataclass(frozen=True)
class Decision:
    threshold: float = 0.5  # a pixel is salt when its probability is above this
    min_area: int = 0  # a predicted mask with fewer pixels is emptied
    empty_cut: float | None = None  # emptied when the image head's P(salt) is below this
    rules: tuple[str, ...] = ()  # neighbour rules (lib/neighbours.py) applied after the three above
    # a mask covering at least this fraction of its image is kept though the head's cut would empty it: the head
    # mistakes texture-less, fully salted tiles for empty ones (docs/results.md)
    full_keep: float | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rules"] = list(self.rules)
        for key, unset in (("rules", []), ("full_keep", None)):  # a decision without them reads as it did
            if out[key] == unset:  # before they existed (records stay valid)
                del out[key]
        return out

    def describe(self) -> str:
        """The decision in words, as every stage, message and page says it."""
        cut = "" if self.empty_cut is None else f", head cut {self.empty_cut:.2f}"
        keep = "" if self.full_keep is None else f" unless the mask covers {self.full_keep:.0%}"
        rules = f", neighbour rules {', '.join(self.rules)}" if self.rules else ""
        return f"threshold {self.threshold:.3f}, min area {self.min_area}{cut}{keep}{rules}"

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        optional = lambda key: None if d.get(key) is None else float(d[key])  # noqa: E731
        return cls(float(d["threshold"]), int(d.get("min_area", 0)), optional("empty_cut"), tuple(d.get("rules", ())),
                   optional("full_keep"))


def emptied(pred_area: np.ndarray, salt_prob: np.ndarray | None, decision: Decision, pixels: int) -> np.ndarray:
    """Which predictions the rules empty, for areas of any shape (leading axis = images; `pixels` per image)."""
    out = pred_area < decision.min_area
    if decision.empty_cut is not None and salt_prob is not None:
        cut = (salt_prob < decision.empty_cut).reshape((-1,) + (1,) * (np.ndim(pred_area) - 1))
        if decision.full_keep is not None:
            cut = cut & (pred_area < decision.full_keep * pixels)
        out = out | cut
    return out


def masks_from_probs(probs: Probs, decision: Decision) -> np.ndarray:
    masks = binarize(probs.levels, decision.threshold)
    flat = masks.reshape(len(masks), -1)
    masks[emptied(flat.sum(1), probs.salt_prob, decision, flat.shape[1])] = False
    return masks


def stored_decision(exp: ExperimentLayout) -> Decision:
    """The decision the tune stage chose for an experiment; the plain 0.5 threshold before it has run."""
    if not exp.tune_json.exists():
        return Decision()
    try:
        return Decision.from_dict(read_json(exp.tune_json)["decision"])
    except (KeyError, TypeError, ValueError):
        raise PipelineError(f"{exp.tune_json} lacks a valid decision; rerun the tune stage") from None
