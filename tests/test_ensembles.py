"""Ensembles as configs (lib/ensembles.py): checked in one line per problem, run end to end by run.sh, stale
per member."""
import subprocess
import sys

import pandas as pd
import pytest

from pipeline.lib.config import load_config
from pipeline.lib.demo_data import make_demo
from pipeline.lib.ensembles import is_ensemble, load_ensemble
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import CONFIG_DIR, REPO

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.epochs=1", "train.batch_size=8", "predict.batch_size=32"]


def ensemble_file(folder, members: list[str], name="pair", extra=""):
    path = folder / f"{name}.yaml"
    path.write_text("ensemble:\n" + extra + "  members:\n" + "".join(members))
    return path


def member(config="demo.yaml", overrides=()):
    return f"    - config: {config}\n      overrides: [{', '.join(repr(o) for o in overrides)}]\n"


def test_every_shipped_ensemble_loads():
    shipped = sorted((CONFIG_DIR / "ensembles").glob("*.yaml"))
    assert shipped
    for path in shipped:
        ensemble = load_ensemble(path)
        assert is_ensemble(path) and len(set(ensemble.member_names())) == len(ensemble.members) >= 2


@pytest.mark.parametrize("members, extra, words", [
    ([member()], "", r"ensemble.members lists 1 config\(s\); an ensemble needs two or more"),
    ([member(), member()], "", "member demo is listed twice"),
    ([member(), member(overrides=["data.n_folds=5"])], "", "members on different splits"),
    ([member(), member("gone.yaml")], "", "config gone.yaml does not exist"),
    ([member(), member(overrides=["train.seed=1"])], "  combine: median\n", "ensemble.combine = 'median'; valid: mean"),
    ([member(), member(overrides=["train.seed=1"])], "  weights: [1, 2]\n", "ensemble.weights is not a key"),
    (["    - demo.yaml\n", member()], "", r"ensemble.members\[0\] must be \{config: FILE"),
])
def test_a_bad_ensemble_is_one_line_naming_the_key(tmp_path, members, extra, words):
    with pytest.raises(PipelineError, match=words):
        load_ensemble(ensemble_file(tmp_path, members, extra=extra))


def test_an_ensemble_is_no_experiment_config(tmp_path):
    path = ensemble_file(tmp_path, [member(), member(overrides=["train.seed=1"])])
    with pytest.raises(PipelineError, match="is an ensemble of experiments, not one: run it with `bash run.sh"):
        load_config(path)


def run_sh(config, data, work):
    return subprocess.run(["bash", str(REPO / "run.sh"), "--config", str(config), "--input", str(data),
                           "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
def test_run_sh_trains_each_member_then_averages_tunes_and_submits_the_ensemble(tmp_path):
    make_demo(tmp_path / "input", n_train=50, n_test=20, seed=3)
    work = tmp_path / "work"
    first, second = member(overrides=TINY), member(overrides=[*TINY, "train.seed=1"])
    path = ensemble_file(tmp_path, [first, second])
    done = run_sh(path, tmp_path / "input", work)
    assert done.returncode == 0, done.stderr[-3000:]
    names = load_ensemble(path).member_names()
    assert "CV mAP" in done.stdout and f"submission: {work / 'submissions' / 'pair.csv'}" in done.stdout
    for name in names:
        assert len(list((work / "experiments" / name).glob("fold_*/best.pt"))) == 3  # demo.yaml: 3 folds
    submission = pd.read_csv(work / "submissions" / "pair.csv", dtype=str, keep_default_na=False)
    assert submission["id"].tolist() == pd.read_csv(tmp_path / "input" / "sample_submission.csv", dtype=str)["id"].tolist()

    status = subprocess.run([sys.executable, "-m", "pipeline.status", "--config", str(path), "--input", str(tmp_path / "input"),
                             "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)
    assert f"ensemble pair ({path}): mean of {', '.join(names)}" in status.stdout
    assert status.stdout.count("predict: up to date") == 3 and status.stdout.count("submit: up to date") == 1

    third = member(overrides=[*TINY, "train.seed=2"])  # the second member changed
    ensemble_file(tmp_path, [first, third])
    again = run_sh(path, tmp_path / "input", work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("fold 0: up to date") == 1  # the first member is not trained again
    assert "ensemble: stale" in again.stdout
    board = subprocess.run([sys.executable, "-m", "pipeline.leaderboard", "--input", str(tmp_path / "input"),
                            "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)
    row = pd.read_csv(work / "experiments" / "leaderboard.csv").set_index("experiment").loc["pair"]
    assert board.returncode == 0 and row["kind"] == "ensemble" and row["state"] == "up to date"
    assert row["changed"] == f"mean of {', '.join(load_ensemble(path).member_names())}"

    ensemble_file(tmp_path, [first, third], extra="  combine: weighted\n")  # weights tuned on out-of-fold maps
    weighted = subprocess.run([sys.executable, "-m", "pipeline.submit", "--config", str(path), "--input",
                               str(tmp_path / "input"), "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)
    assert weighted.returncode == 0, weighted.stderr[-3000:]
    assert "ensemble: stale: combine" in weighted.stdout and "ensemble weights (" in weighted.stdout
    subprocess.run([sys.executable, "-m", "pipeline.leaderboard", "--input", str(tmp_path / "input"),
                    "--workdir", str(work)], capture_output=True, text=True, cwd=REPO, check=True)
    row = pd.read_csv(work / "experiments" / "leaderboard.csv").set_index("experiment").loc["pair"]
    assert row["changed"].startswith(f"weighted of {', '.join(load_ensemble(path).member_names())} (test weights ")
