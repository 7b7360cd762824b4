"""Stage: out-of-fold and test probabilities with flip TTA, averaged over folds.

    python -m pipeline.predict --config pipeline/configs/default.yaml [--input DIR]

For every trained fold: its validation images' probabilities -> experiments/<name>/fold_K/oof_probs.npz,
and all test images' -> averaged over folds into experiments/<name>/test_probs.npz. Each fold's models
are rebuilt from their checkpoints alone (no pretrained weights are loaded, so this works offline) and
averaged over the TTA views (flipped back first); with predict.use_snapshots the fold's cycle snapshots
are averaged instead of its best checkpoint. Validation during training runs the same code.
"""
from __future__ import annotations

import numpy as np

from .lib import cli
from .lib.config import load_config
from .lib.data import load_test, load_train
from .lib.errors import run_stage
from .lib.folds import read_folds
from .lib.inference import out_of_fold
from .lib.runtime import pick_device
from .lib.store import Probs, save_probs, to_levels


def predict(config, layout, work) -> None:
    exp = work.experiment(config.name)
    device = pick_device()
    train = load_train(layout, work)
    split = read_folds(work, train.ids)["fold"].to_numpy()
    test = load_test(layout, work)
    folds = sorted(set(split.tolist()))
    total, salt_total, oof = np.zeros(test.images.shape, np.float32), 0, {}
    for fold in folds:
        oof[fold], predictor = out_of_fold(config, exp, train.ids, train.images, train.depths, split, fold, device)
        prediction = predictor(test.images, test.depths, f"fold {fold} test")
        total += prediction.probs
        salt_total = None if prediction.salt_prob is None else salt_total + prediction.salt_prob
        print(f"fold {fold}: {len(predictor.models)} model(s), {len(oof[fold].ids)} out-of-fold and "
              f"{len(test.ids)} test images")
    for fold, probs in oof.items():  # written once every fold has succeeded
        save_probs(exp.oof_probs(fold), probs)
    salt = None if salt_total is None else salt_total / len(folds)
    save_probs(exp.test_probs, Probs(test.ids, to_levels(total / len(folds)), salt))
    print(f"wrote {exp.test_probs}")


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", help="dotted key=value pairs, e.g. predict.tta=none")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    layout, work = cli.layouts(args)
    predict(config, layout, work)


if __name__ == "__main__":
    run_stage(main)
