"""Stage: choose the threshold (and minimum area, and empty-head cut) on out-of-fold predictions.

    python -m pipeline.tune --config pipeline/configs/default.yaml [--input DIR]

Reads every fold's oof_probs.npz (no GPU needed, so tuning reruns in seconds), scores the whole grid
at once, and writes experiments/<name>/tune.json (the decision and the CV score),
threshold_curve.png and val_overlays.png.
"""
from __future__ import annotations

from .lib import cli
from .lib.config import load_config
from .lib.fold_data import FoldInputs
from .lib.tuning import run_tune


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--force", action="store_true", help="tune again even when tune.json is up to date")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides, encoder=False)
    layout, work = cli.layouts(args, n_folds=config.data.n_folds, split=config.data.split)
    FoldInputs.load(layout, work).require_trained(config)  # predictions of folds since retrained otherwise: not reused
    run_tune(config.name, config.tune, layout, work, args.force)


if __name__ == "__main__":
    cli.run_stage(main)
