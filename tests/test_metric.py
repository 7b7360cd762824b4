import numpy as np

from pipeline.lib import metric
from pipeline.lib.probs import to_levels


def masks(*areas):
    """Masks of 101x101 whose first `area` pixels (row-major) are set."""
    out = np.zeros((len(areas), 101 * 101), bool)
    for n, area in enumerate(areas):
        out[n, :area] = True
    return out.reshape(-1, 101, 101)


def test_both_empty_scores_one_and_one_empty_scores_zero():
    assert metric.image_scores(masks(0), masks(0)).tolist() == [1.0]
    assert metric.image_scores(masks(10), masks(0)).tolist() == [0.0]
    assert metric.image_scores(masks(0), masks(10)).tolist() == [0.0]


def test_perfect_prediction_scores_one():
    assert metric.image_scores(masks(500), masks(500)).tolist() == [1.0]


def test_iou_equal_to_a_threshold_is_a_miss():
    # IoU = 60/100 = 0.6 exactly: passes 0.50 and 0.55, misses 0.60 and above
    assert metric.image_scores(masks(100), masks(60)).tolist() == [0.2]
    # IoU = 50/100: exactly the first threshold, so nothing passes
    assert metric.image_scores(masks(100), masks(50)).tolist() == [0.0]


def test_partial_overlaps():
    truth, pred = masks(100, 100), masks(76, 96)  # IoU 0.76 -> 6 of 10; 0.96 -> 10 of 10
    assert np.allclose(metric.image_scores(truth, pred), [0.6, 1.0])
    assert np.isclose(metric.mean_score(truth, pred), 0.8)


def test_grid_scorer_agrees_with_per_image_metric():
    rng = np.random.default_rng(3)
    truth = rng.random((40, 101, 101)) < rng.random((40, 1, 1)) * (rng.random((40, 1, 1)) > 0.4)
    probs = np.clip(truth * 0.6 + rng.random(truth.shape) * 0.5, 0, 1)
    levels = to_levels(probs)
    thresholds = np.linspace(0.05, 0.95, 37)
    grid = metric.threshold_grid_scores(levels, truth, thresholds)
    direct = [metric.mean_score(truth, metric.binarize(levels, t)) for t in thresholds]
    assert np.allclose(grid, direct)
    assert grid.max() > grid.min()  # the data makes the threshold matter
