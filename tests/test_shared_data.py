"""Checks on the real competition data; skipped where ../shared/tgs-salt is absent."""
import numpy as np
import pandas as pd
import pytest

from pipeline.lib import rle
from pipeline.lib.data import load_train
from pipeline.lib.folds import make_folds
from pipeline.lib.paths import InputLayout, WorkLayout

from .conftest import SHARED, needs_shared

pytestmark = pytest.mark.slow  # the real data


@needs_shared
def test_every_train_rle_matches_its_mask_png_and_reencodes(tmp_path):
    frame = pd.read_csv(SHARED / "train.csv", dtype=str, keep_default_na=False)
    train = load_train(InputLayout(SHARED), WorkLayout(tmp_path))  # raises on any PNG/RLE mismatch
    assert train.ids.tolist() == frame["id"].tolist()
    for code, mask in zip(frame["rle_mask"], train.masks):
        assert (rle.decode(code) == mask).all()
    assert rle.encode_many(train.masks) == frame["rle_mask"].tolist()
    assert 0.37 < (train.coverage == 0).mean() < 0.41


@needs_shared
def test_real_folds_are_balanced(tmp_path):
    train = load_train(InputLayout(SHARED), WorkLayout(tmp_path))
    frame = make_folds(train.ids, train.coverage, 5, 42)
    stats = frame.groupby("fold")["coverage"].agg(["size", "mean", lambda c: (c == 0).mean()])
    spread = stats.max() - stats.min()
    assert spread.iloc[0] <= 1 and spread.iloc[1] <= 0.02 and spread.iloc[2] <= 0.02
    assert np.array_equal(frame.sort_values("id")["fold"], make_folds(train.ids, train.coverage, 5, 42)["fold"])
