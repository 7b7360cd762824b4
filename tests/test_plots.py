"""The pictures (lib/plots.py): each one is a PNG of the expected kind, written whole."""
import numpy as np
import pandas as pd
from PIL import Image

from pipeline.lib import plots
from pipeline.lib.postprocess import Decision


def png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
    assert not list(path.parent.glob(".*.tmp"))


def test_curves_threshold_curve_overlays_and_bars_are_pngs(tmp_path):
    log = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_bce": [0.6, 0.4], "score_05": [0.5, 0.6],
                        "score_best": [0.55, 0.65], "lr": [1e-3, 5e-4]})
    plots.training_curves(log, tmp_path / "curves.png", "curves")
    grid = np.linspace(0.2, 0.8, 7)
    plots.threshold_curve(grid, {"plain": grid, "chosen": grid + 0.01}, Decision(0.5, 10, 0.5, (), 0.9),
                          tmp_path / "threshold.png", "threshold")
    images, masks = np.zeros((4, 101, 101), np.uint8), np.zeros((4, 101, 101), bool)
    masks[:, 30:60, 30:60] = True
    plots.overlays(images, masks, tmp_path / "overlays.png", "overlays", truths=masks)
    plots.coverage_bars({"empty": {"images": 3, "score": 0.9, "points": 0.01}, "0-10%": {"images": 2, "score": 0.4,
                                                                                        "points": 0.05}},
                        tmp_path / "bars.png", "bars")
    for name in ("curves", "threshold", "overlays", "bars"):
        png(tmp_path / f"{name}.png")
