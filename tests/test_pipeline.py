"""End to end: `bash run.sh` on generated data in a temporary folder, then every artifact."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from pipeline.lib import rle
from pipeline.lib.config import load_config
from pipeline.lib.demo_data import make_demo
from pipeline.lib.paths import REPO

pytestmark = pytest.mark.slow  # end to end

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.epochs=1", "train.batch_size=8", "predict.batch_size=32"]


def test_run_sh_end_to_end(tmp_path):
    make_demo(tmp_path / "input", n_train=50, n_test=20, seed=3)
    work = tmp_path / "work"
    command = ["bash", str(REPO / "run.sh"), "--config", str(REPO / "pipeline/configs/demo.yaml"),
               "--input", str(tmp_path / "input"), "--workdir", str(work), "--", *TINY]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CV mAP" in result.stdout and "submission:" in result.stdout

    config = load_config(REPO / "pipeline/configs/demo.yaml", TINY)
    experiment = config.name  # overrides: an experiment of its own
    assert experiment.startswith("demo-") and f"experiment {experiment}" in result.stdout
    exp = work / "experiments" / experiment
    n_folds = config.data.n_folds  # demo.yaml's split: 3 folds, in their own file
    assert n_folds == 3 and (work / "folds" / "folds-3.csv").exists() and not (work / "folds" / "folds.csv").exists()
    for fold in range(n_folds):
        for name in ["best.pt", "last.pt", "log.csv", "curves.png", "oof_probs.npz"]:
            assert (exp / f"fold_{fold}" / name).exists(), (fold, name)
    for name in ["config.yaml", "made_from.json", "test_probs.npz", "tune.json", "oof_scores.csv",
                 "threshold_curve.png", "val_overlays.png", "coverage_scores.png", "test_overlays.png"]:
        assert (exp / name).exists(), name
    tuned = json.loads((exp / "tune.json").read_text())
    assert 0 <= tuned["cv_score"] <= 1 and len(tuned["fold_scores"]) == n_folds

    sample = pd.read_csv(tmp_path / "input" / "sample_submission.csv", dtype=str)
    submission = pd.read_csv(work / "submissions" / f"{experiment}.csv", dtype=str, keep_default_na=False)
    assert submission["id"].tolist() == sample["id"].tolist()
    for code in submission["rle_mask"]:
        rle.decode(code)  # raises on an invalid string

    again = subprocess.run(command + [], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0
    for stage in ("train", "predict", "tune", "submit"):
        assert f"{stage}: up to date" in again.stdout, stage
    assert again.stdout.count("fold 0: up to date") == 1 and "CV mAP" in again.stdout

    board = subprocess.run([sys.executable, "-m", "pipeline.leaderboard", "--input", str(tmp_path / "input"),
                            "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)
    assert board.returncode == 0, board.stderr[-2000:]
    row = pd.read_csv(work / "experiments" / "leaderboard.csv").iloc[0]
    assert row["experiment"] == experiment and row["state"] == "up to date" and row["cv"] == tuned["cv_score"]
    assert row["changed"].startswith("model.decoder_channels") and row["epochs"] == 1


def test_run_sh_rejects_unknown_stage(tmp_path):
    result = subprocess.run(["bash", str(REPO / "run.sh"), "--only", "bake"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown stage 'bake'" in result.stderr
