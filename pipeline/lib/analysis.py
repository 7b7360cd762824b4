"""Where an experiment loses points: every out-of-fold image's score under the tuned decision, its error
kind, and the mAP each kind, coverage class and fold costs (what `tune` writes as oof_scores.csv and
prints; the mean of `score` is the CV).

Error kinds: `empty` (both empty: 1), `false_salt` (salt predicted on an empty image: 0), `missed_salt`
(salt missed: 0), `partial` (both non-empty, score below 1), `exact` (both non-empty, every IoU threshold met).
A kind's or class's `points` is the mAP it costs: the sum of (1 - score) over its images / all images.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .folds import COVERAGE_BINS, coverage_classes
from .metric import image_scores

ERROR_KINDS = ("empty", "exact", "partial", "missed_salt", "false_salt")
LOSING_KINDS = ("false_salt", "missed_salt", "partial")  # what the overlays show, worst first
COLUMNS = ["id", "fold", "coverage_class", "true_area", "pred_area", "salt_prob", "score", "error"]


def class_label(cls: int) -> str:
    """0 -> 'empty', 1 -> '0-10%', ..., 10 -> '90-100%'."""
    step = 100 // COVERAGE_BINS
    return "empty" if cls == 0 else f"{(cls - 1) * step}-{cls * step}%"


def error_kinds(true_area: np.ndarray, pred_area: np.ndarray, score: np.ndarray) -> np.ndarray:
    kinds = np.where(true_area == 0, np.where(pred_area == 0, "empty", "false_salt"),
                     np.where(pred_area == 0, "missed_salt", np.where(score >= 1, "exact", "partial")))
    return kinds.astype(object)


def per_image(ids, split, truth: np.ndarray, masks: np.ndarray, salt_prob) -> pd.DataFrame:
    """One row per image (the columns of oof_scores.csv)."""
    true_area = truth.reshape(len(truth), -1).sum(1)
    pred_area = masks.reshape(len(masks), -1).sum(1)
    score = image_scores(truth, masks)
    return pd.DataFrame({
        "id": np.asarray(ids), "fold": np.asarray(split, int),
        "coverage_class": coverage_classes(true_area / truth[0].size), "true_area": true_area,
        "pred_area": pred_area,
        "salt_prob": np.round(salt_prob, 4) if salt_prob is not None else np.full(len(ids), np.nan),
        "score": np.round(score, 4), "error": error_kinds(true_area, pred_area, score)})[COLUMNS]


def _groups(frame: pd.DataFrame, key: str, labels=None) -> dict:
    total = len(frame)
    out = {}
    for value, part in frame.groupby(key, sort=True):
        name = labels(value) if labels else str(value)
        out[name] = {"images": int(len(part)), "score": round(float(part["score"].mean()), 5),
                     "points": round(float((1 - part["score"]).sum() / total), 5)}
    return out


def summary(frame: pd.DataFrame) -> dict:
    """CV per coverage class and per fold, and each error kind's count and cost (tune.json's `analysis`)."""
    errors = {kind: {"images": int((frame["error"] == kind).sum()),
                     "points": round(float((1 - frame.loc[frame["error"] == kind, "score"]).sum() / len(frame)), 5)}
              for kind in ERROR_KINDS}
    return {"by_coverage_class": _groups(frame, "coverage_class", class_label), "by_fold": _groups(frame, "fold"),
            "errors": errors}


# coverage classes pooled where the CPU recipe loses its points: empty images, small masks, the rest
SIZE_GROUPS = {"empty": (0,), "under_10%": (1,), "10%_up": tuple(range(2, COVERAGE_BINS + 1))}


def points_by_size(frame: pd.DataFrame) -> dict[str, float]:
    """The mAP each size group costs (`lost_<group>`): the sum of (1 - score) over its images / all images."""
    lost = 1 - frame["score"]
    return {f"lost_{name}": round(float(lost[frame["coverage_class"].isin(classes)].sum() / len(frame)), 4)
            for name, classes in SIZE_GROUPS.items()}


def worst(frame: pd.DataFrame, per_kind: int = 8) -> list[tuple[str, np.ndarray]]:
    """The worst images of each losing kind (row positions): lowest score, then the largest area wrong."""
    out = []
    for kind in LOSING_KINDS:
        part = frame[frame["error"] == kind]
        area = part["pred_area"] if kind == "false_salt" else part["true_area"]
        order = np.lexsort((-area.to_numpy(), part["score"].to_numpy()))[:per_kind]
        if len(order):
            out.append((kind, np.flatnonzero(frame["error"].to_numpy() == kind)[order]))
    return out


def report_lines(analysis: dict) -> list[str]:
    """The printout: mAP lost per error kind, then per coverage class."""
    lines = ["mAP lost by error kind: " + ", ".join(
        f"{kind} {e['points']:.4f} ({e['images']} images)" for kind, e in analysis["errors"].items()
        if kind in LOSING_KINDS)]
    lines.append("by coverage class (images, mAP, points lost): " + "; ".join(
        f"{name} {c['images']}, {c['score']:.3f}, {c['points']:.4f}" for name, c in analysis["by_coverage_class"].items()))
    return lines
