"""Every file a stage reads or writes is named here and nowhere else.

Two roots: the *input* folder (Kaggle's layout, read-only; in a Kaggle kernel it lives under
/kaggle/input) and the *work* folder that holds everything the pipeline writes (folds/, cache/,
experiments/, submissions/). Each can be set by a flag or an environment variable.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .compat import LEGACY_FOLDS_NAME
from .errors import PipelineError
from .kaggle_kernel import INPUT, WORKING

PACKAGE = Path(__file__).resolve().parents[1]  # pipeline/, in a checkout or an installed copy
REPO = PACKAGE.parent  # the checkout (for an installed copy: its site-packages, never written to)
CONFIG_DIR = PACKAGE / "configs"  # the shipped experiments (package data)
INPUT_ENV = "TGS_INPUT"
WORKDIR_ENV = "TGS_WORKDIR"
# a kernel's attached datasets and competition data (read-only), and its output folder (its submission.csv is
# what "Submit" takes): defined in the kernel's script, which must stand alone
KAGGLE_INPUT, KAGGLE_WORKING = INPUT, WORKING
N_FOLDS = 5  # the split every config uses unless its data.n_folds says otherwise
SPLITS = ("coverage", "mosaic")  # stratified by coverage; the same, each mosaic wholly in one fold
MOSAIC_PICTURES = 6  # the largest mosaics drawn


def kaggle_submission() -> Path:
    """Where a kernel's "Submit" takes the submission from."""
    return KAGGLE_WORKING / "submission.csv"


def home() -> Path:
    """The default root of input/ and the outputs: the checkout when the code runs from one, else (an
    installed package) the current folder."""
    return REPO if (REPO / "run.sh").is_file() and (REPO / "pyproject.toml").is_file() else Path.cwd()


def input_dir(arg: str | os.PathLike | None = None) -> Path:
    """The Kaggle data folder: `--input`, else $TGS_INPUT, else `input/` in the checkout (or current folder)."""
    return Path(arg or os.environ.get(INPUT_ENV) or home() / "input")


def work_dir(arg: str | os.PathLike | None = None) -> Path:
    """Where outputs go: `--workdir`, else $TGS_WORKDIR, else the checkout (or the current folder)."""
    return Path(arg or os.environ.get(WORKDIR_ENV) or home())


def config_file(name: str | os.PathLike) -> Path:
    """A config by path, or a shipped one by name from any folder: `cpu`, `cpu.yaml`, `ablations/scse.yaml`
    or `pipeline/configs/cpu.yaml` (as the README writes it) all find the package's copy."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml", REPO / path):
        if candidate.is_file():
            return candidate
    return path


# An experiment's name is a folder and file name of its own: letters, digits, '-', '_' and '.', not starting
# with a dot (so never '', '.', '..', a path or a hidden file); '+' joins the members of an ensemble.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")
NAME_RULE = "letters, digits, '-', '_' and '.', not starting with a dot"


def manifest_of(folder: Path) -> Path:
    """What an extracted zip's folder holds (lib/archives.py), written last: a folder without it is not whole."""
    return folder / ".members"


def checked_name(name: str, source: str = "") -> str:
    if not EXPERIMENT_NAME.match(name or ""):
        raise PipelineError(f"experiment name {name!r}{source} is not a name: use {NAME_RULE}")
    return name


@dataclass(frozen=True)
class InputLayout:
    """The competition data as Kaggle ships it: the CSVs in `root`, the image folders in root/train and
    root/test, or, for data that came as train.zip / test.zip, where those were extracted (lib/archives.py)."""

    root: Path
    train_root: Path | None = None  # holds images/ and masks/; default root/train
    test_root: Path | None = None  # holds images/; default root/test

    @property
    def train_dir(self) -> Path:
        return self.train_root or self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.test_root or self.root / "test"

    @property
    def competition_zip(self) -> Path:
        """Kaggle's one download (`kaggle competitions download -c ...`): the CSVs and the zips inside."""
        return self.root / "tgs-salt-identification-challenge.zip"

    def holds_data(self) -> bool:
        return any(path.exists() for path in (self.train_csv, self.train_dir, self.competition_zip,
                                              *self.zips.values()))

    @property
    def zips(self) -> dict[str, Path]:
        """The archives the image folders may come in: {"train": root/train.zip, "test": root/test.zip}."""
        return {part: self.root / f"{part}.zip" for part in ("train", "test")}

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
        return self.train_dir / "images"

    @property
    def train_masks(self) -> Path:
        return self.train_dir / "masks"

    @property
    def test_images(self) -> Path:
        return self.test_dir / "images"


@dataclass(frozen=True)
class WorkLayout:
    """Everything the pipeline writes, under one root; `n_folds` and `split` pick which split the stages use."""

    root: Path
    n_folds: int = N_FOLDS
    split: str = "coverage"

    @property
    def folds_csv(self) -> Path:
        if (self.n_folds, self.split) == LEGACY_FOLDS_NAME:
            return self.root / "folds" / "folds.csv"
        name = "folds" + ("" if self.n_folds == N_FOLDS else f"-{self.n_folds}")
        return self.root / "folds" / (name + ("" if self.split == "coverage" else f"-{self.split}") + ".csv")

    @property
    def mosaic_dir(self) -> Path:
        return self.root / "mosaic"

    @property
    def mosaic_csv(self) -> Path:
        """Every train and test tile's place: id, mosaic, row, col (a tile in no mosaic: a mosaic of one)."""
        return self.mosaic_dir / "mosaic.csv"

    @property
    def mosaic_json(self) -> Path:
        """What mosaic.csv was made from (written last by the mosaic stage)."""
        return self.mosaic_dir / "mosaic.json"

    def mosaic_png(self, k: int) -> Path:
        """The k-th largest mosaic (0: the largest), tiles in place with the training masks."""
        return self.mosaic_dir / f"mosaic_{k}.png"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def unpacked_dir(self) -> Path:
        """Where train.zip / test.zip are extracted, one folder per archive content."""
        return self.cache_dir / "input"

    @property
    def experiments_dir(self) -> Path:
        """One folder per experiment (and ensemble), and the tables and page that compare them."""
        return self.root / "experiments"

    def experiment_names(self) -> list[str]:
        """The experiments on disk: trained (a config.yaml) or ensembled (a predict.json)."""
        root = self.experiments_dir
        return sorted(p.name for p in root.iterdir() if p.is_dir() and any(
            (ExperimentLayout(p).config_yaml.is_file(), ExperimentLayout(p).predict_json.is_file()))) \
            if root.is_dir() else []

    @property
    def leaderboard_csv(self) -> Path:
        return self.experiments_dir / "leaderboard.csv"

    @property
    def leaderboard_md(self) -> Path:
        return self.experiments_dir / "leaderboard.md"

    @property
    def ablations_md(self) -> Path:
        """`pipeline.ablate`'s table: each config against its base, fold scores and the k-fold CV."""
        return self.experiments_dir / "ablations.md"

    @property
    def lock_file(self) -> Path:
        """The advisory lock that keeps one run at a time per work folder."""
        return self.root / ".lock"

    @property
    def lock_holder(self) -> Path:
        """Who holds the lock: a pid and a command line."""
        return self.root / ".lock.holder"

    @property
    def bench_json(self) -> Path:
        """`pipeline.bench`'s figures (default --out)."""
        return self.root / "bench" / "bench.json"

    @property
    def train_step_json(self) -> Path:
        """`pipeline.bench --train-step`'s figures: images/s and profile of each option and loss phase."""
        return self.root / "bench" / "train_step.json"

    @property
    def gpu_check_json(self) -> Path:
        """`pipeline.bench --gpu-check`'s figures (default --out)."""
        return self.root / "bench" / "gpu_check.json"

    @property
    def precision_json(self) -> Path:
        """`pipeline.bench --trained`'s float32 vs bf16 figures (default --out)."""
        return self.root / "bench" / "precision.json"

    @property
    def report_html(self) -> Path:
        """Every experiment on one self-contained page (pictures embedded)."""
        return self.experiments_dir / "report.html"

    def experiment(self, name: str) -> "ExperimentLayout":
        return ExperimentLayout(self.experiments_dir / checked_name(name))

    def submission_csv(self, name: str) -> Path:
        return self.root / "submissions" / f"{checked_name(name)}.csv"


@dataclass(frozen=True)
class ExperimentLayout:
    """One experiment (one config): its folds' training outputs and its predictions."""

    root: Path

    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    @property
    def made_from_json(self) -> Path:
        """The config file and the overrides the experiment was made from."""
        return self.root / "made_from.json"

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold_{fold}"

    def folds_on_disk(self) -> list[int]:
        """The folds that have a folder here, trained or not."""
        return sorted(int(p.name.split("_")[1]) for p in self.root.glob("fold_*")
                      if p.is_dir() and p.name.split("_")[1].isdigit())

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
    def kaggle_submissions_json(self) -> Path:
        """Every submission of this experiment to Kaggle (submit --kaggle-message)."""
        return self.root / "kaggle_submissions.json"

    @property
    def tune_json(self) -> Path:
        return self.root / "tune.json"

    @property
    def threshold_png(self) -> Path:
        return self.root / "threshold_curve.png"

    @property
    def oof_scores_csv(self) -> Path:
        """One row per out-of-fold image: its score under the tuned decision and its error kind."""
        return self.root / "oof_scores.csv"

    @property
    def coverage_png(self) -> Path:
        return self.root / "coverage_scores.png"

    @property
    def val_overlay_png(self) -> Path:
        return self.root / "val_overlays.png"

    @property
    def test_overlay_png(self) -> Path:
        return self.root / "test_overlays.png"

    def mosaic_png(self, k: int) -> Path:
        """The k-th largest mosaic with this experiment's test masks and the pixels its neighbour rules changed."""
        return self.root / f"mosaic_{k}.png"
