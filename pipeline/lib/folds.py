"""The k-fold split, stratified by mask coverage: made once, written to folds/folds.csv (folds-K.csv for a
k other than 5), read by every stage that needs to know which images a fold validates on."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .errors import PipelineError
from .identity import digest
from .paths import WorkLayout
from .store import atomic_path

COVERAGE_BINS = 10


def coverage_classes(coverage: np.ndarray, bins: int = COVERAGE_BINS) -> np.ndarray:
    """0 for an empty mask, then 1..bins for coverage in equal-width bins of (0, 1]."""
    coverage = np.asarray(coverage, float)
    return np.where(coverage == 0, 0, 1 + np.minimum((coverage * bins).astype(int), bins - 1))


def make_folds(ids, coverage, n_folds: int = 5, seed: int = 42, groups=None) -> pd.DataFrame:
    """Deterministic stratified split; the result does not depend on the order of `ids`. With `groups` (one
    per id: its mosaic), every group lies wholly in one fold (scikit-learn's StratifiedGroupKFold)."""
    frame = pd.DataFrame({"id": np.asarray(ids, str), "coverage": np.asarray(coverage, float),
                          "group": np.arange(len(ids)) if groups is None else np.asarray(groups)})
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    frame["coverage_class"] = coverage_classes(frame["coverage"].to_numpy())
    if n_folds < 2 or n_folds > frame["group"].nunique():
        raise PipelineError(f"--n-folds must be between 2 and the number of images ({len(frame)}) or mosaics "
                            f"({frame['group'].nunique()}), got {n_folds}")
    frame["fold"] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small demo sets have thin coverage classes
        for fold, (_, held_out) in enumerate(splitter(n_folds, seed, groups is not None).split(
                frame, frame["coverage_class"], frame["group"])):
            frame.loc[held_out, "fold"] = fold
    return frame[["id", "fold", "coverage", "coverage_class"]]


def splitter(n_folds: int, seed: int, grouped: bool):
    kind = StratifiedGroupKFold if grouped else StratifiedKFold
    return kind(n_splits=n_folds, shuffle=True, random_state=seed)


def write_folds(work: WorkLayout, frame: pd.DataFrame) -> None:
    with atomic_path(work.folds_csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def missing_split(work: WorkLayout) -> PipelineError:
    return PipelineError(f"{work.folds_csv} is missing; run `python -m pipeline.folds --n-folds {work.n_folds}` "
                         "first (run.sh does, from the config's data.n_folds)")


def read_folds(work: WorkLayout, ids) -> pd.DataFrame:
    """The saved split, checked to be readable and to cover exactly `ids` (the current training set)."""
    path = work.folds_csv
    if not path.exists():
        raise missing_split(work)
    fix = "rewrite it with `python -m pipeline.folds --force`"
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise PipelineError(f"{path} is not a readable CSV ({' '.join(str(err).split())[:120]}); {fix}") from None
    if not {"id", "fold"} <= set(frame.columns) or not pd.api.types.is_integer_dtype(frame["fold"]) \
            or frame["id"].duplicated().any():
        raise PipelineError(f"{path} needs unique ids and an integer fold column; {fix}")
    if frame["fold"].nunique() != work.n_folds:
        raise PipelineError(f"{path} holds {frame['fold'].nunique()} folds, not the {work.n_folds} asked for "
                            f"(data.n_folds or --n-folds); rewrite it with "
                            f"`python -m pipeline.folds --n-folds {work.n_folds} --force`")
    if set(frame["id"]) != set(ids):
        raise PipelineError(f"{path} was made for other training data (its ids differ from train.csv); "
                            "rerun `python -m pipeline.folds --force` for this input")
    return frame.set_index("id").loc[list(ids)].reset_index()


def split_digest(frame: pd.DataFrame) -> str:
    """The split's content (which id is in which fold), whatever the row order."""
    ordered = frame.sort_values("id")
    return digest(ordered["id"].to_numpy(str), ordered["fold"].to_numpy(np.int64))


def fold_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby("fold").agg(images=("id", "size"), empty_fraction=("coverage", lambda c: (c == 0).mean()),
                                     mean_coverage=("coverage", "mean")).round(4)


def fold_list(text: str, work: WorkLayout) -> list[int]:
    """'all', one fold number, or a comma-separated list of them ('0,2')."""
    if text == "all":
        if not work.folds_csv.exists():
            raise missing_split(work)
        return sorted(pd.read_csv(work.folds_csv)["fold"].unique().tolist())
    try:
        return sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise PipelineError(f"--fold must be a fold number, a list like 0,2, or 'all'; got '{text}'") from None
