"""Neighbour-aware decisions: rules that change a tile's mask from what its mosaic neighbours show.

The rules (after the 4th and 14th places' post-processing, argus-tgs-salt `mosaic/postprocess.py`) work
down the columns of a mosaic, where salt bodies run on from tile to tile:

  between           tiles between two known tiles of a column whose facing edges cross the same number of
                    salt runs: each run's boundaries interpolated linearly from the upper edge to the lower
  carry_down        below a known tile whose salt runs straight down (same runs on its top and bottom
                    edge), the tiles of the column to the next known tile get its mask
  carry_up          the same upwards, to the first tile whose prediction starts salt (its top edge holds
                    less than half the salt of its bottom edge)
  empty_below_full  tiles under a known tile whose bottom edge is all salt are emptied (the annotators
                    marked the top of a salt body, not what lies under it)
  fill_holes        holes inside a predicted mask are filled (masks of the training set have none)

A rule sees a `Neighbourhood`: every tile's place, the masks *known* to be true (training tiles whose masks
are given: at submission all of them, in tuning those of the other folds) and the current masks of the
rest (predictions). It changes only the tiles that are not known; no truth of a tile being decided ever
reaches it (`neighbourhood` refuses a tile that is both known and predicted).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import binary_fill_holes

from .errors import PipelineError
from .mosaic import Mosaics
from .names import NEIGHBOUR_RULES, implemented


@dataclass(frozen=True)
class Neighbourhood:
    mosaics: Mosaics
    index: pd.Series  # id -> row of the arrays below
    masks: np.ndarray  # (n, 101, 101) bool: the truth where known, else the prediction (empty without one)
    known: np.ndarray  # (n,) bool

    @property
    def strips(self) -> list[np.ndarray]:
        return self.mosaics.strips


def neighbourhood(mosaics: Mosaics, known: dict, predicted: dict) -> Neighbourhood:
    """`known`: id -> true mask; `predicted`: id -> predicted mask. Tiles in neither are unknown and empty."""
    both = set(known) & set(predicted)
    if both:
        raise PipelineError(f"neighbour rules: {len(both)} tile(s) (first: {sorted(both)[0]}) are given both as known "
                            "and as predicted; a rule must never read the truth of a tile it decides")
    ids = mosaics.frame["id"].to_numpy()
    index = pd.Series(np.arange(len(ids)), index=ids)
    shape = next(iter({**known, **predicted}.values())).shape
    masks = np.zeros((len(ids),) + shape, bool)
    for source in (known, predicted):
        if source:
            masks[index[list(source)].to_numpy()] = np.stack(list(source.values()))
    return Neighbourhood(mosaics, index, masks, index.index.isin(list(known)))


def runs(row: np.ndarray) -> np.ndarray:
    """(k, 2) start and end (exclusive) of each run of salt along an edge."""
    edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def straight(mask: np.ndarray) -> bool:
    """Salt that runs straight through: the same runs on the top and the bottom edge, and some salt."""
    return bool(mask.any()) and np.array_equal(runs(mask[0]), runs(mask[-1]))


def starts_salt(mask: np.ndarray) -> bool:
    """A tile where a salt body begins: its top edge holds less than half the salt of its bottom edge."""
    return bool(mask.any()) and mask[0].sum() < mask[-1].sum() / 2


def between(nb: Neighbourhood, masks: np.ndarray) -> np.ndarray:
    for strip in nb.strips:
        known = np.flatnonzero(nb.known[strip])
        for upper, lower in zip(known, known[1:]):
            top, bottom = masks[strip[upper]], masks[strip[lower]]
            if lower - upper < 2 or not top.any() or not bottom.any():
                continue
            start, end = runs(top[-1]), runs(bottom[0])
            if len(start) == len(end):
                filled = interpolate(start, end, (lower - upper - 1) * masks.shape[1], masks.shape[2])
                masks[strip[upper + 1:lower]] = filled.reshape(lower - upper - 1, *masks.shape[1:])
    return masks


def interpolate(start: np.ndarray, end: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (height, width) mask whose salt runs move linearly from `start` (above it) to `end` (below)."""
    t = (np.arange(height) + 0.5) / height
    x = np.arange(width)
    out = np.zeros((height, width), bool)
    for (s0, e0), (s1, e1) in zip(start, end):
        lo, hi = s0 + t * (s1 - s0), e0 + t * (e1 - e0)
        out |= (x[None] >= np.round(lo)[:, None]) & (x[None] < np.round(hi)[:, None])
    return out


def carry(nb: Neighbourhood, masks: np.ndarray, downwards: bool) -> np.ndarray:
    for strip in nb.strips:
        order = strip if downwards else strip[::-1]
        for k, tile in enumerate(order):
            if not nb.known[tile] or not straight(masks[tile]):
                continue
            for other in order[k + 1:]:
                if nb.known[other] or (not downwards and starts_salt(masks[other])):
                    break
                masks[other] = masks[tile]
    return masks


def carry_down(nb: Neighbourhood, masks: np.ndarray) -> np.ndarray:
    return carry(nb, masks, True)


def carry_up(nb: Neighbourhood, masks: np.ndarray) -> np.ndarray:
    return carry(nb, masks, False)


def empty_below_full(nb: Neighbourhood, masks: np.ndarray) -> np.ndarray:
    for strip in nb.strips:
        for k, tile in enumerate(strip):
            if nb.known[tile] and masks[tile][-1].all():
                for other in strip[k + 1:]:
                    if nb.known[other]:
                        break
                    masks[other] = False
    return masks


def fill_holes(nb: Neighbourhood, masks: np.ndarray) -> np.ndarray:
    for tile in np.flatnonzero(~nb.known & masks.reshape(len(masks), -1).any(1)):
        masks[tile] = binary_fill_holes(masks[tile])
    return masks


RULES = implemented(NEIGHBOUR_RULES, {"between": between, "carry_down": carry_down, "carry_up": carry_up,
                                      "empty_below_full": empty_below_full, "fill_holes": fill_holes})  # in this order


def apply(nb: Neighbourhood, rules) -> np.ndarray:
    """The masks after `rules` (names of RULES, applied in the registry's order); known tiles unchanged."""
    masks = nb.masks.copy()
    for name in (name for name in RULES if name in set(rules)):
        masks = RULES[name](nb, masks)
        masks[nb.known] = nb.masks[nb.known]
    return masks


def check_rules(rules, source: str) -> None:
    unknown = [name for name in rules if name not in RULES]
    if unknown:
        raise PipelineError(f"{source}: unknown neighbour rule '{unknown[0]}'; valid: {', '.join(RULES)}")


def decide_test(mosaics: Mosaics, train_masks: dict, test_masks: dict, rules) -> dict:
    """The test masks after `rules`, with every training mask known (what a submission may use)."""
    nb = neighbourhood(mosaics, train_masks, test_masks)
    after = apply(nb, rules)
    return {tile: after[nb.index[tile]] for tile in test_masks}
