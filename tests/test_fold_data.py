"""What one fold trains and validates on (lib/fold_data.py)."""

import pytest

from pipeline.lib.data import load_train
from pipeline.lib.errors import PipelineError
from pipeline.lib.fold_data import fold_data
from pipeline.lib.folds import read_folds
from pipeline.lib.paths import InputLayout


def test_fold_data_drops_blank_images_from_training_only(demo_input, work):
    train_set = load_train(InputLayout(demo_input))
    split = read_folds(work, train_set.ids)["fold"].to_numpy()
    kept, dropped = fold_data(train_set, split, 0, False), fold_data(train_set, split, 0, True)
    blank = train_set.images.reshape(len(split), -1).std(1) == 0
    assert len(kept.fit) - len(dropped.fit) == (blank & (split != 0)).sum() > 0
    assert len(kept.val) == len(dropped.val) == (split == 0).sum()
    with pytest.raises(PipelineError, match="fold 7 is not in the split"):
        fold_data(train_set, split, 7, False)
