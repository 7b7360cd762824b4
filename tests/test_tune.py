import numpy as np

from pipeline.lib.store import Probs, to_levels
from pipeline.lib.config import TuneConfig
from pipeline.lib.tuning import search

SECTION = TuneConfig(thresholds={"start": 0.2, "stop": 0.8, "num": 61}, min_areas=[0, 30], empty_cuts=[None, 0.5])


def synthetic(n=60, seed=0):
    """Salt pixels at p=0.7, a ring of background around each body at p=0.55, the rest at 0.3,
    so exactly the thresholds in [0.55, 0.70) give perfect masks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:101, 0:101]
    truth, probs = np.zeros((n, 101, 101), bool), np.full((n, 101, 101), 0.3)
    for i in range(n):
        if i % 3 == 0:
            continue  # empty image
        cy, cx, r = rng.integers(30, 70, 2).tolist() + [rng.integers(8, 25)]
        d = np.hypot(y - cy, x - cx)
        truth[i] = d < r
        probs[i][(d >= r) & (d < r + 4)] = 0.55
        probs[i][truth[i]] = 0.7
    return truth, probs


def test_tune_recovers_the_known_best_threshold():
    truth, probs = synthetic()
    decision, score, curves = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs)), truth, SECTION)
    assert 0.55 <= decision.threshold < 0.7
    assert score == 1.0 and decision.min_area == 0
    assert curves["plain"].min() < 0.9  # thresholds outside the band are clearly worse
    assert curves["plain"].max() == curves["chosen"].max() == 1.0


def test_min_area_removes_specks():
    truth, probs = synthetic()
    probs[0, :2, :2] = 0.9  # a 4-pixel false positive in an empty image
    decision, score, curves = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs)), truth, SECTION)
    assert decision.min_area == 30 and score == 1.0
    assert curves["plain"].max() < 1.0 and curves["chosen"].max() == 1.0


def test_the_curves_exist_when_the_grid_has_no_zero_min_area():
    truth, probs = synthetic()
    section = SECTION.model_copy(update={"min_areas": [30, 60]})
    decision, _, curves = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs)), truth, section)
    assert decision.min_area in (30, 60) and curves["plain"].shape == curves["chosen"].shape == (61,)


def test_empty_head_cut_is_tuned_when_the_head_exists():
    truth, probs = synthetic()
    probs[0, 40:60, 40:60] = 0.9  # a large false positive the head knows is wrong
    head = truth.reshape(len(truth), -1).any(1).astype(np.float32) * 0.8 + 0.1
    decision, score, _ = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs), head), truth, SECTION)
    assert decision.empty_cut == 0.5 and score == 1.0
