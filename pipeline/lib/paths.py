"""Every file a stage reads or writes is named here and nowhere else.

Two roots: the *input* folder (Kaggle's layout, read-only; in a Kaggle kernel it lives under
/kaggle/input) and the *work* folder that holds everything the pipeline writes (folds/, cache/,
experiments/, submissions/). Each can be set by a flag or an environment variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "pipeline" / "configs"
INPUT_ENV = "TGS_INPUT"
WORKDIR_ENV = "TGS_WORKDIR"
N_FOLDS = 5  # the split every config uses unless its data.n_folds says otherwise


def input_dir(arg: str | os.PathLike | None = None) -> Path:
    """The Kaggle data folder: `--input`, else $TGS_INPUT, else `input/` in the repo."""
    return Path(arg or os.environ.get(INPUT_ENV) or REPO / "input")


def work_dir(arg: str | os.PathLike | None = None) -> Path:
    """Where outputs go: `--workdir`, else $TGS_WORKDIR, else the repo itself."""
    return Path(arg or os.environ.get(WORKDIR_ENV) or REPO)


@dataclass(frozen=True)
class InputLayout:
    """The competition data exactly as Kaggle ships it."""

    root: Path

    @property
    def train_csv(self) -> Path:
        return self.root / "train.csv"

    @property
    def depths_csv(self) -> Path:
        return self.root / "depths.csv"

    @property
    def sample_submission_csv(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def train_images(self) -> Path:
        return self.root / "train" / "images"

    @property
    def train_masks(self) -> Path:
        return self.root / "train" / "masks"

    @property
    def test_images(self) -> Path:
        return self.root / "test" / "images"


@dataclass(frozen=True)
class WorkLayout:
    """Everything the pipeline writes, under one root; `n_folds` picks which split the stages use."""

    root: Path
    n_folds: int = N_FOLDS

    @property
    def folds_csv(self) -> Path:
        # the 5-fold split keeps the name it always had, so work folders made before other splits stay valid
        name = "folds.csv" if self.n_folds == N_FOLDS else f"folds-{self.n_folds}.csv"
        return self.root / "folds" / name

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def experiment(self, name: str) -> "ExperimentLayout":
        return ExperimentLayout(self.root / "experiments" / name)

    def submission_csv(self, name: str) -> Path:
        return self.root / "submissions" / f"{name}.csv"


@dataclass(frozen=True)
class ExperimentLayout:
    """One experiment (one config): its folds' training outputs and its predictions."""

    root: Path

    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold_{fold}"

    def last_checkpoint(self, fold: int) -> Path:
        return self.fold_dir(fold) / "last.pt"

    def best_checkpoint(self, fold: int) -> Path:
        return self.fold_dir(fold) / "best.pt"

    def snapshot(self, fold: int, cycle: int) -> Path:
        return self.fold_dir(fold) / f"snapshot_{cycle}.pt"

    def snapshots(self, fold: int) -> list[Path]:
        return sorted(self.fold_dir(fold).glob("snapshot_*.pt"), key=lambda p: int(p.stem.split("_")[1]))

    def log_csv(self, fold: int) -> Path:
        return self.fold_dir(fold) / "log.csv"

    def curves_png(self, fold: int) -> Path:
        return self.fold_dir(fold) / "curves.png"

    def done_marker(self, fold: int) -> Path:
        return self.fold_dir(fold) / "done.json"

    def oof_probs(self, fold: int) -> Path:
        return self.fold_dir(fold) / "oof_probs.npz"

    def prediction_files(self, folds: list[int]) -> list[Path]:
        """Everything predict writes (before its record)."""
        return [self.test_probs] + [self.oof_probs(fold) for fold in folds]

    @property
    def test_probs(self) -> Path:
        return self.root / "test_probs.npz"

    @property
    def predict_json(self) -> Path:
        """What the stored probabilities were made from (written last by predict)."""
        return self.root / "predict.json"

    @property
    def submit_json(self) -> Path:
        """What the submission CSV was made from (written last by submit)."""
        return self.root / "submit.json"

    @property
    def pseudo_labels(self) -> Path:
        return self.root / "pseudo_labels.npz"

    @property
    def tune_json(self) -> Path:
        return self.root / "tune.json"

    @property
    def threshold_png(self) -> Path:
        return self.root / "threshold_curve.png"

    @property
    def val_overlay_png(self) -> Path:
        return self.root / "val_overlays.png"

    @property
    def test_overlay_png(self) -> Path:
        return self.root / "test_overlays.png"
