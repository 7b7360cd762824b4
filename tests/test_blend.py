"""Combining ensemble members (lib/blend.py): the weight grid, the weighted mean, and weights tuned on the
other folds only, so a fold's own truth never chooses how its predictions are mixed."""
import numpy as np

from pipeline.lib.blend import combined, tuned_weights, weight_grid
from pipeline.lib.probs import Probs, to_levels


def test_the_grid_sums_to_one_and_starts_at_the_plain_mean():
    assert weight_grid(2)[0] == (0.5, 0.5) and len(weight_grid(2)) == 11
    assert len(weight_grid(3)) == 66 and all(abs(sum(w) - 1) < 1e-9 for w in weight_grid(3))


def test_combined_is_the_weighted_mean_of_maps_and_heads():
    ids = ["a", "b"]
    one = Probs(ids, to_levels(np.zeros((2, 4, 4))), np.array([0.0, 1.0], np.float32))
    two = Probs(ids[::-1], to_levels(np.ones((2, 4, 4))), np.array([1.0, 1.0], np.float32))
    mean = combined([one, two], ids)
    assert (mean.levels == 128).all() and np.allclose(mean.salt_prob, [0.5, 1.0])
    tilted = combined([one, two], ids, (0.8, 0.2))
    assert (tilted.levels == 51).all() and np.allclose(tilted.salt_prob, [0.2, 1.0])


def member_maps(truth, good: np.ndarray, seed: int) -> np.ndarray:
    """Maps that are right on the `good` images and noise elsewhere."""
    noise = np.random.default_rng(seed).random(truth.shape)
    return np.where(good[:, None, None], truth * 0.9 + 0.05, noise)


def test_a_folds_weights_never_see_its_own_truth():
    rng = np.random.default_rng(0)
    truth = np.zeros((30, 16, 16), bool)
    for i in range(30):
        truth[i, : rng.integers(2, 14)] = True
    folds = np.repeat([0, 1, 2], 10)
    ids = [f"i{i}" for i in range(30)]
    a = Probs(ids, to_levels(member_maps(truth, folds != 2, 1)))  # right on folds 0 and 1
    b = Probs(ids, to_levels(member_maps(truth, folds == 2, 2)))  # right on fold 2 alone

    def weights(truth):
        fold_ids = {f: [i for i, g in zip(ids, folds) if g == f] for f in range(3)}
        oof = {f: [p.subset(fold_ids[f]) for p in (a, b)] for f in range(3)}
        return tuned_weights(oof, fold_ids, {f: truth[folds == f] for f in range(3)})

    before = weights(truth)
    assert before[2][0] > before[2][1]  # tuned on folds 0 and 1, where member a is right
    flipped = truth.copy()
    flipped[folds == 0] = ~flipped[folds == 0]  # fold 0's truth turned upside down
    after = weights(flipped)
    assert after[0] == before[0]  # fold 0's own weights did not move
    assert after[1] != before[1] or after[2] != before[2] or after["test"] != before["test"]
