"""The competition metric: per image, the fraction of IoU thresholds 0.50, 0.55, ..., 0.95 that the
prediction's IoU strictly exceeds (1 when truth and prediction are both empty, 0 when exactly one is);
the score is the mean over images.

IoU thresholds are compared as integers (20 * inter > k * union for k = 10..19) so an IoU exactly
equal to a threshold is a miss, with no floating-point surprises.
"""
from __future__ import annotations

import numpy as np

from .probs import LEVELS, to_levels

IOU_STEPS = np.arange(10, 20)  # IoU thresholds k / 20


def scores_from_counts(inter, pred_area, truth_area) -> np.ndarray:
    """Per-image score from integer counts of any (matching) shape."""
    inter, pred_area, truth_area = np.broadcast_arrays(
        np.asarray(inter, np.int64), np.asarray(pred_area, np.int64), np.asarray(truth_area, np.int64))
    union = pred_area + truth_area - inter
    hits = 20 * inter[..., None] > IOU_STEPS * union[..., None]
    return np.where(union == 0, 1.0, hits.mean(axis=-1))


def image_scores(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Score of each image of a batch (N, H, W) of boolean masks."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    axes = tuple(range(1, truth.ndim))
    return scores_from_counts((truth & pred).sum(axes), pred.sum(axes), truth.sum(axes))


def mean_score(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(image_scores(truth, pred).mean())


def binarize(levels: np.ndarray, threshold: float) -> np.ndarray:
    """A pixel is salt when its probability level is strictly above `threshold` (a probability)."""
    return levels > threshold * LEVELS


def grid_counts(levels: np.ndarray, truth: np.ndarray, thresholds, chunk: int = 512):
    """Intersections and predicted areas for every (image, threshold), in one pass over the pixels.

    Each image's pixels are histogrammed by probability level, once for all pixels and once for
    salt pixels; a threshold then reads its counts off the cumulative histograms, so the cost is
    one pass over the data whatever the number of thresholds.
    Returns inter (N, T), pred_area (N, T), truth_area (N,).
    """
    levels = np.asarray(levels)
    if levels.dtype != np.uint8:
        levels = to_levels(levels)
    truth = np.asarray(truth, bool)
    n = len(levels)
    # first level predicted positive for each threshold, with the same comparison as binarize()
    first = (np.arange(LEVELS + 1)[None, :] <= np.asarray(thresholds, float)[:, None] * LEVELS).sum(1)
    inter = np.empty((n, len(first)), np.int64)
    pred_area = np.empty((n, len(first)), np.int64)
    for a in range(0, n, chunk):
        lv = levels[a:a + chunk].reshape(-1, levels[0].size).astype(np.int64)
        tr = truth[a:a + chunk].reshape(len(lv), -1)
        key = lv + (LEVELS + 1) * np.arange(len(lv))[:, None]
        size = len(lv) * (LEVELS + 1)
        all_hist = np.bincount(key.ravel(), minlength=size).reshape(len(lv), -1)
        pos_hist = np.bincount(key[tr], minlength=size).reshape(len(lv), -1)
        # counts at level >= l, with a zero column for "nothing predicted"
        all_above = np.pad(all_hist[:, ::-1].cumsum(1)[:, ::-1], ((0, 0), (0, 1)))
        pos_above = np.pad(pos_hist[:, ::-1].cumsum(1)[:, ::-1], ((0, 0), (0, 1)))
        inter[a:a + chunk] = pos_above[:, first]
        pred_area[a:a + chunk] = all_above[:, first]
    return inter, pred_area, truth.reshape(n, -1).sum(1)


def threshold_grid_scores(levels: np.ndarray, truth: np.ndarray, thresholds) -> np.ndarray:
    """Mean competition score for each threshold (probabilities as uint8 levels or floats)."""
    inter, pred_area, truth_area = grid_counts(levels, truth, thresholds)
    return scores_from_counts(inter, pred_area, truth_area[:, None]).mean(axis=0)
