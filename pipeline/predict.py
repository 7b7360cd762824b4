"""Stage: out-of-fold and test probabilities with flip TTA, averaged over folds.

    python -m pipeline.predict --config pipeline/configs/default.yaml [--input DIR]

For every trained fold: its validation images' probabilities -> experiments/<name>/fold_K/oof_probs.npz,
and all test images' -> averaged over folds into experiments/<name>/test_probs.npz. Each fold's models
are rebuilt from their checkpoints alone (no pretrained weights are loaded, so this works offline) and
averaged over the TTA views (flipped back first); with predict.use_snapshots the fold's cycle snapshots
are averaged instead of its best checkpoint. Validation during training runs the same code. With several
GPUs the folds are dealt out over all of them (one thread per GPU).
"""
from __future__ import annotations

import threading

import numpy as np

from .lib import cli
from .lib.config import load_config
from .lib.data import load_test
from .lib.distributed import local_devices, spread, tune_kernels
from .lib.fold_data import FoldInputs
from .lib.inference import out_of_fold
from .lib.probs import Probs, save_probs, to_levels
from .lib.records import predict_stage


class FoldSums:
    """Test probabilities and head outputs summed over folds (folds may finish at once on several GPUs)."""

    def __init__(self, shape):
        self.probs, self.salt, self.lock = np.zeros(shape, np.float32), 0, threading.Lock()

    def add(self, prediction) -> None:
        with self.lock:
            self.probs += prediction.probs
            self.salt = None if prediction.salt_prob is None else self.salt + prediction.salt_prob


def predict(config, layout, work, force: bool = False) -> None:
    exp = work.experiment(config.name)
    inputs, test = FoldInputs.load(layout, work), load_test(layout, work)
    folds = inputs.folds
    inputs.require_trained(config)  # before anything is predicted
    stage = predict_stage(config, exp, folds, inputs.train.digest, test.digest, inputs.split_digest)
    if not stage.begin(force):
        return
    devices = local_devices()
    if devices[0].type == "cuda":
        tune_kernels()
    sums = FoldSums(test.images.shape)

    def one_fold(fold, device):
        probs, predictor = out_of_fold(inputs, config, fold, device)
        sums.add(predictor(test.images, test.depths, f"fold {fold} test"))
        print(f"fold {fold}: {len(predictor.models)} model(s) on {device} ({predictor.settings.precision}), {len(probs.ids)} "
              f"out-of-fold and {len(test.ids)} test images", flush=True)
        return probs

    oof = dict(zip(folds, spread(folds, devices, one_fold)))  # folds dealt out over the GPUs
    for fold, probs in oof.items():  # written once every fold has succeeded
        save_probs(exp.oof_probs(fold), probs)
    salt = None if sums.salt is None else sums.salt / len(folds)
    save_probs(exp.test_probs, Probs(test.ids, to_levels(sums.probs / len(folds)), salt))
    stage.finish()  # last: what the probabilities above were made from
    print(f"wrote {exp.test_probs}")


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--force", action="store_true", help="predict again even when the stored probabilities are up to date")
    p.add_argument("overrides", nargs="*", help="dotted key=value pairs, e.g. predict.tta=none")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    layout, work = cli.layouts(args, n_folds=config.data.n_folds, split=config.data.split)
    predict(config, layout, work, args.force)


if __name__ == "__main__":
    cli.run_stage(main)
