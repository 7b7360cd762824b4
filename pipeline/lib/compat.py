"""Reading what earlier versions wrote, in one place. Each entry names what it keeps working and the
release that may drop it: 1.0, which will ask for folds trained before it to be retrained (--force).
"""
from __future__ import annotations

# identity: train/data keys added after folds were first recorded, with the value that trains as before
# they existed. Left out of a fold's identity at that value, so folds trained earlier stay up to date.
# Added in 0.4 (train.ema, data.n_folds), 0.8 (data.split) and 0.9 (train.encoder_bn, early_input_mode, early_epochs); may drop in 1.0.
ADDED_KEYS = {"train": {"ema": 0.0, "encoder_bn": "train", "early_input_mode": None, "early_epochs": 0, "swa_epochs": 0},
              "data": {"n_folds": 5, "split": "coverage"}}

# paths: the 5-fold coverage split keeps the name it had before k and the kind of split were settings
# (folds/folds.csv, not folds-5-coverage.csv), so work folders made before 0.4 keep their split. Kept for good:
# renaming a split file would re-split every existing work folder.
LEGACY_FOLDS_NAME = (5, "coverage")

# checkpoints: last.pt written before the optimiser step (0.2) or the start weights (0.3) were saved in it;
# such a run resumes with the step its finished epochs imply and the start weights unknown. May drop in 1.0.
UNKNOWN_START = "unknown (saved before it was recorded)"


def training_state_defaults(state: dict, steps_per_epoch: int) -> dict:
    """A resume checkpoint's contents with the keys older versions did not write filled in."""
    filled = dict(state)
    filled.setdefault("start_weights", UNKNOWN_START)
    filled.setdefault("step", (state["epoch"] + 1) * steps_per_epoch)
    filled.setdefault("ema", None)
    filled.setdefault("swa", None)
    return filled
