"""Stage: split the labelled images into k folds, stratified by mask coverage.

    python -m pipeline.folds [--input DIR] [--n-folds 5] [--seed 42] [--force]

Writes folds/folds.csv (id, fold, coverage, coverage_class) once; later stages reuse it, and it is
rewritten only with --force, so every experiment is validated on the same split.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from . import cli
from .data import load_train
from .errors import PipelineError, run_stage
from .paths import WorkLayout
from .store import atomic_path

COVERAGE_BINS = 10


def coverage_classes(coverage: np.ndarray, bins: int = COVERAGE_BINS) -> np.ndarray:
    """0 for an empty mask, then 1..bins for coverage in equal-width bins of (0, 1]."""
    coverage = np.asarray(coverage, float)
    return np.where(coverage == 0, 0, 1 + np.minimum((coverage * bins).astype(int), bins - 1))


def make_folds(ids, coverage, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Deterministic stratified split; the result does not depend on the order of `ids`."""
    frame = pd.DataFrame({"id": np.asarray(ids, str), "coverage": np.asarray(coverage, float)})
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    frame["coverage_class"] = coverage_classes(frame["coverage"].to_numpy())
    if n_folds < 2 or n_folds > len(frame):
        raise PipelineError(f"--n-folds must be between 2 and the number of images ({len(frame)}), got {n_folds}")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    frame["fold"] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small demo sets have thin coverage classes
        for fold, (_, held_out) in enumerate(splitter.split(frame, frame["coverage_class"])):
            frame.loc[held_out, "fold"] = fold
    return frame[["id", "fold", "coverage", "coverage_class"]]


def write_folds(work: WorkLayout, frame: pd.DataFrame) -> None:
    with atomic_path(work.folds_csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def read_folds(work: WorkLayout, ids) -> pd.DataFrame:
    """The saved split, checked to cover exactly `ids` (the current training set)."""
    path = work.folds_csv
    if not path.exists():
        raise PipelineError(f"{path} is missing; run `python -m pipeline.folds` first")
    frame = pd.read_csv(path, dtype={"id": str})
    if set(frame["id"]) != set(ids):
        raise PipelineError(f"{path} was made for other training data (its ids differ from train.csv); "
                            "rerun `python -m pipeline.folds --force` for this input")
    return frame.set_index("id").loc[list(ids)].reset_index()


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--force", action="store_true", help="rewrite folds/folds.csv if it exists")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args)
    train = load_train(layout, work)
    if work.folds_csv.exists() and not args.force:
        read_folds(work, train.ids)  # refuse a stale split made for other data
        print(f"{work.folds_csv} exists; reusing it (pass --force to rewrite)")
        return
    frame = make_folds(train.ids, train.coverage, args.n_folds, args.seed)
    write_folds(work, frame)
    print(f"wrote {work.folds_csv}")
    print(fold_summary(frame).to_string())


def fold_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby("fold").agg(images=("id", "size"), empty_fraction=("coverage", lambda c: (c == 0).mean()),
                                     mean_coverage=("coverage", "mean")).round(4)


if __name__ == "__main__":
    run_stage(main)
