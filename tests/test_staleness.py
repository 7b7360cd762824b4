"""Staleness: a changed input, split or config never reuses what was made from the old one, and a rerun
with nothing changed redoes nothing (on a copy of a tiny generated run)."""
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import folds, status, submit, train, tune
from pipeline.lib import rle
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import WorkLayout
from tests.tiny_run import DEMO, name, stages

pytestmark = pytest.mark.slow  # a tiny run of every stage, copied per test


def test_a_rerun_is_up_to_date_everywhere(copy, capsys):
    stages(copy / "input", copy / "work")
    out = capsys.readouterr().out
    assert out.count("up to date") >= 6  # 3 folds, predict, tune, submit


def test_training_overrides_make_a_new_experiment_and_predict_overrides_redo_predict(copy, capsys):
    assert name("train.lr=0.01") != name() and name("predict.tta=none") == name()
    stages(copy / "input", copy / "work", "train.lr=0.01")
    exp = WorkLayout(copy / "work").experiment(name("train.lr=0.01"))
    assert all(exp.done_marker(f).exists() for f in range(3)) and (copy / "work" / "submissions" /
                                                                   f"{exp.root.name}.csv").exists()
    capsys.readouterr()
    stages(copy / "input", copy / "work", "predict.tta=none", only=("predict", "tune"))
    out = capsys.readouterr().out
    assert "predict: stale: predict.tta hflip -> none" in out and "tune: stale: predictions" in out


def test_an_edited_config_file_stops_every_stage_with_what_changed(copy, capsys):
    """The tiny run's folds, as experiment 'demo'; then demo.yaml is edited (lr): training stops, and so do
    tune and submit, whose records (made from the old folds' predictions) still look up to date by themselves."""
    work = copy / "work"
    shutil.copytree(work / "experiments" / name(), work / "experiments" / "demo")
    edited = copy / "demo.yaml"
    edited.write_text(f"base: {DEMO}\nmodel:\n  decoder_channels: [16, 16, 8, 8, 8]\ntrain:\n  epochs: 1\n"
                      "  batch_size: 8\n  lr: 0.02\n")
    io = ["--config", str(edited), "--input", str(copy / "input"), "--workdir", str(work)]
    for stage, args in ((train, ["--fold", "all"]), (tune, []), (submit, [])):
        with pytest.raises(PipelineError, match=r"fold 0 of 'demo' was trained with other inputs \(train.lr 0.003 "
                                                r"-> 0.02\); retrain it with --force, or give the changed config a"):
            stage.main(io + args)
    status.main(io)
    out = capsys.readouterr().out
    assert "train: stale" in out and "predict: stale: train is stale" in out and "tune: stale: train is stale" in out


def test_resplitting_makes_trained_folds_stale_and_never_leaks(copy):
    folds.main(["--input", str(copy / "input"), "--workdir", str(copy / "work"), "--n-folds", "3", "--seed", "7",
                "--force"])
    with pytest.raises(PipelineError, match="trained with other inputs \\(split\\)"):
        stages(copy / "input", copy / "work", only=("predict",))
    with pytest.raises(PipelineError, match="trained with other inputs \\(split\\)"):
        stages(copy / "input", copy / "work", only=("train",))


def test_changed_masks_make_trained_folds_stale(copy):
    frame = pd.read_csv(copy / "input" / "train.csv", dtype=str, keep_default_na=False)
    mask = np.zeros((101, 101), bool)
    mask[:30] = True
    cv2.imwrite(str(copy / "input" / "train" / "masks" / f"{frame['id'][0]}.png"), mask.astype(np.uint8) * 255)
    frame.loc[0, "rle_mask"] = rle.encode(mask)
    frame.to_csv(copy / "input" / "train.csv", index=False)
    with pytest.raises(PipelineError, match=r"trained with other inputs \(train data\)"):
        stages(copy / "input", copy / "work", only=("train",))


def test_added_or_removed_test_images_redo_predict(copy, capsys):
    sample = pd.read_csv(copy / "input" / "sample_submission.csv", dtype=str)
    gone = sample["id"].iloc[-1]
    sample.iloc[:-1].to_csv(copy / "input" / "sample_submission.csv", index=False)
    (copy / "input" / "test" / "images" / f"{gone}.png").unlink()
    capsys.readouterr()
    stages(copy / "input", copy / "work", only=("predict", "tune", "submit"))
    out = capsys.readouterr().out
    assert "predict: stale: test data" in out and "submit: stale" in out
    written = pd.read_csv(copy / "work" / "submissions" / f"{name()}.csv", dtype=str, keep_default_na=False)
    assert written["id"].tolist() == sample["id"].iloc[:-1].tolist()


def test_a_failed_stage_leaves_no_trusted_artifact(copy, monkeypatch):
    exp = WorkLayout(copy / "work").experiment(name())
    exp.tune_json.unlink()
    fail = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk"))  # noqa: E731
    monkeypatch.setattr("pipeline.lib.plots.overlays", fail)
    monkeypatch.setattr("pipeline.lib.plots.error_overlays", fail)
    with pytest.raises(RuntimeError):
        stages(copy / "input", copy / "work", only=("tune",))
    assert not exp.tune_json.exists()
    csv = copy / "work" / "submissions" / f"{name()}.csv"
    csv.unlink()
    with pytest.raises(RuntimeError):
        stages(copy / "input", copy / "work", only=("submit",))
    assert not csv.exists()


def test_a_deleted_output_makes_its_stage_missing_again(copy, capsys):
    exp = WorkLayout(copy / "work").experiment(name())
    exp.oof_probs(1).unlink()
    capsys.readouterr()
    stages(copy / "input", copy / "work", only=("predict", "tune"))
    out = capsys.readouterr().out
    assert "predict: missing" in out and exp.oof_probs(1).exists() and "tune: stale: predictions" in out


def test_predictions_made_in_another_precision_are_redone(copy, capsys, monkeypatch):
    """`predict.cpu_precision: auto` is bf16 on a CPU with AMX tiles, float32 elsewhere: probabilities carried
    to a machine of the other kind are made again, not reused."""
    from pipeline.lib import runtime
    amx_here = runtime.has_amx()
    monkeypatch.setattr(runtime, "has_amx", lambda: not amx_here)
    capsys.readouterr()
    stages(copy / "input", copy / "work", only=("predict",))
    out = capsys.readouterr().out
    assert "predict: stale: predict.precision" in out and "wrote" in out
