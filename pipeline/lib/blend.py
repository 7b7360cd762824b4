"""Combining ensemble members' probabilities: the plain mean, or a weighted mean whose weights are tuned on
the out-of-fold predictions. A fold's own images are combined with weights tuned on the other folds' images
only, so no fold's truth ever chooses how its own predictions are mixed and the CV stays honest; the test
images are combined with weights tuned on every out-of-fold image.

Weights are tried on a grid (steps of 0.1, summing to 1) and scored by the mAP of the combined maps at their
best threshold (the decision's other rules are tuned afterwards, on the combined set, as for any experiment).
"""
from __future__ import annotations

import itertools

import numpy as np

from .metric import threshold_grid_scores
from .probs import Probs, from_levels, to_levels

COMBINE = ("mean", "weighted")
STEPS = 10  # the weight grid's resolution: 1 / STEPS
THRESHOLDS = np.round(np.linspace(0.2, 0.8, 25), 4)  # where each weighting is scored


def combined(probs: list[Probs], ids, weights=None) -> Probs:
    """The members' maps (and image heads, when every member has one) for `ids`, averaged with `weights`
    (equal when None)."""
    parts = [p.subset(ids) for p in probs]
    w = np.full(len(parts), 1 / len(parts)) if weights is None else np.asarray(weights, float) / np.sum(weights)
    levels = to_levels(sum(wi * from_levels(p.levels) for wi, p in zip(w, parts)))
    heads = [p.salt_prob for p in parts]
    head = None if any(h is None for h in heads) else sum(wi * h for wi, h in zip(w, heads)).astype(np.float32)
    return Probs(np.asarray(ids), levels, head)


def weight_grid(members: int) -> list[tuple[float, ...]]:
    """Every weighting in steps of 1/STEPS summing to 1, the most even first (ties go to the plain mean)."""
    grid = [c for c in itertools.product(range(STEPS + 1), repeat=members) if sum(c) == STEPS]
    grid.sort(key=lambda c: float(np.var(c)))
    return [tuple(round(x / STEPS, 2) for x in c) for c in grid]


def best_weights(probs: list[Probs], ids, truth: np.ndarray) -> tuple[float, ...]:
    """The grid's weighting whose combined maps of `ids` score best against `truth` (rows aligned)."""
    grid, parts = weight_grid(len(probs)), [p.subset(ids) for p in probs]  # aligned once, not per weighting
    scores = [threshold_grid_scores(combined(parts, ids, w).levels, truth, THRESHOLDS).max() for w in grid]
    return grid[int(np.argmax(scores))]


def tuned_weights(oof: dict[int, list[Probs]], fold_ids: dict[int, list[str]],
                  fold_truth: dict[int, np.ndarray]) -> dict:
    """{fold: weights tuned on the other folds' images, "test": weights tuned on all}: `oof[fold]` holds each
    member's out-of-fold maps of that fold, `fold_ids` / `fold_truth` its ids and true masks."""
    weights = {}
    for held in [*oof, "test"]:
        folds = [f for f in oof if f != held]
        members = [Probs.concat([oof[f][m] for f in folds]) for m in range(len(oof[folds[0]]))]
        ids = [i for f in folds for i in fold_ids[f]]
        weights[held] = best_weights(members, ids, np.concatenate([fold_truth[f] for f in folds]))
    return weights
