"""Experiment identity: a changed input, split or config never reuses stale results (on generated data)."""
import json
import os
import shutil
import stat
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import folds, predict, submit, train, tune
from pipeline.lib import rle
from pipeline.lib.config import load_config
from pipeline.lib.errors import PipelineError
from pipeline.lib.identity import changes
from pipeline.lib.paths import CONFIG_DIR, REPO, WorkLayout

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.epochs=1", "train.batch_size=8", "train.num_workers=0",
        "predict.batch_size=32"]
DEMO = str(CONFIG_DIR / "demo.yaml")


def stages(input_dir, workdir, *extra, only=("train", "predict", "tune", "submit")):
    io = ["--input", str(input_dir), "--workdir", str(workdir)]
    for name in only:
        if name == "train":
            train.main(["--config", DEMO, "--fold", "all", "--resume", *io, *TINY, *extra])
        else:
            {"predict": predict, "tune": tune, "submit": submit}[name].main(["--config", DEMO, *io, *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Input and work folders after one complete tiny run (3 folds); tests copy them before changing anything."""
    from pipeline.lib.demo_data import make_demo
    root = tmp_path_factory.mktemp("trained")
    make_demo(root / "input", n_train=36, n_test=12, seed=4)
    folds.main(["--input", str(root / "input"), "--workdir", str(root / "work"), "--n-folds", "3"])
    stages(root / "input", root / "work")
    return root


@pytest.fixture
def copy(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def name(*extra):
    return load_config(DEMO, TINY + list(extra)).name


def test_changes_name_keys_and_values():
    old = {"split": "a", "config": {"train": {"lr": 0.001, "epochs": 5}}}
    new = {"split": "b", "config": {"train": {"lr": 0.01, "epochs": 5}}}
    assert changes(old, new) == ["train.lr 0.001 -> 0.01", "split"]
    assert changes(old, old) == []


def test_a_key_added_later_leaves_earlier_folds_up_to_date_until_it_is_used():
    from pipeline.lib.config import Config
    from pipeline.lib.compat import ADDED_KEYS
    from pipeline.lib.identity import training_sections
    for section, keys in ADDED_KEYS.items():
        for key, before in keys.items():
            assert getattr(getattr(Config(), section), key) == before  # the default trains as before
            assert key not in training_sections(Config())[section]
    assert training_sections(load_config(DEMO, ["train.ema=0.9"]))["train"]["ema"] == 0.9
    assert name("train.ema=0.9") != name()
    assert training_sections(load_config(DEMO))["data"]["n_folds"] == 3  # demo.yaml's split is not the default
    assert name("data.n_folds=5") != name()


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


def test_an_edited_config_file_stops_training_with_what_changed(copy):
    """The tiny run's folds, as experiment 'demo'; then demo.yaml is edited (lr) and trained again."""
    work = copy / "work"
    shutil.copytree(work / "experiments" / name(), work / "experiments" / "demo")
    edited = copy / "demo.yaml"
    edited.write_text(f"base: {DEMO}\nmodel:\n  decoder_channels: [16, 16, 8, 8, 8]\ntrain:\n  epochs: 1\n"
                      "  batch_size: 8\n  lr: 0.02\n")
    with pytest.raises(PipelineError, match=r"fold 0 of 'demo' was trained with other inputs \(train.lr 0.003 -> "
                                            r"0.02\); retrain it with --force, or give the changed config a new"):
        train.main(["--config", str(edited), "--fold", "all", "--input", str(copy / "input"), "--workdir", str(work)])


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


def test_a_second_run_on_the_same_workdir_exits_naming_the_holder(copy):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pipeline.lib.lock import lock_workdir; "
        "lock_workdir(sys.argv[2]); print('locked', flush=True); time.sleep(60)"), str(REPO), str(copy / "work")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        env = {k: v for k, v in os.environ.items() if k != "TGS_LOCKED_WORKDIR"}
        second = subprocess.run([sys.executable, "-m", "pipeline.tune", "--config", DEMO, "--input",
                                 str(copy / "input"), "--workdir", str(copy / "work"), *TINY],
                                capture_output=True, text=True, cwd=REPO, env=env)
        assert second.returncode == 2
        assert f"is in use by pid {holder.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        whole = subprocess.run(["bash", str(REPO / "run.sh"), "--config", DEMO, "--input", str(copy / "input"),
                                "--workdir", str(copy / "work")], capture_output=True, text=True, env=env)
        assert whole.returncode == 2 and f"is in use by pid {holder.pid}" in whole.stderr
    finally:
        holder.kill()
        holder.wait()


def test_demo_generation_is_safe_when_run_twice_at_once(tmp_path):
    command = [sys.executable, "-m", "pipeline.demo", "--out", str(tmp_path / "demo"), "--n-train", "30",
               "--n-test", "10"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    assert [r.wait() for r in runs] == [0, 0]
    assert len(list((tmp_path / "demo" / "train" / "images").glob("*.png"))) == 30
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folder left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_workdir_is_one_clean_line(copy):
    work = copy / "ro"
    work.mkdir()
    work.chmod(stat.S_IRUSR | stat.S_IXUSR)
    result = subprocess.run([sys.executable, "-m", "pipeline.folds", "--input", str(copy / "input"),
                             "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "pass --workdir DIR" in result.stderr and "Traceback" not in result.stderr


def test_a_read_only_workdir_error_is_one_line(monkeypatch, capsys):
    from pipeline.lib.errors import run_stage

    def fails(argv):
        raise PermissionError(13, "Permission denied", "/ro/folds/folds.csv")

    with pytest.raises(SystemExit) as exit_:
        run_stage(fails)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "cannot write /ro/folds/folds.csv" in err


def test_outputs_follow_the_umask(copy):
    work = WorkLayout(copy / "work", n_folds=3)  # demo.yaml's split
    for path in [work.folds_csv, work.experiment(name()).tune_json, work.experiment(name()).best_checkpoint(0),
                 work.experiment(name()).test_probs, copy / "work" / "submissions" / f"{name()}.csv"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o666 & ~current_umask(), (path, oct(mode))


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_status_names_each_stage(copy, capsys):
    from pipeline import status
    status.main(["--config", DEMO, "--input", str(copy / "input"), "--workdir", str(copy / "work"), *TINY])
    out = capsys.readouterr().out
    for stage in ("folds", "train", "predict", "tune", "submit"):
        assert f"{stage}: up to date" in out
    status.main(["--config", DEMO, "--input", str(copy / "input"), "--workdir", str(copy / "work"), *TINY,
                 "train.lr=0.02"])
    out = capsys.readouterr().out
    assert "train: missing" in out and "predict: missing" in out
    json.loads((WorkLayout(copy / "work").experiment(name()).predict_json).read_text())


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


STATUS_CONFIG_ERROR = """
import sys
from pipeline import status
try:
    status.main(["--config", "demo", "train.epochs=0"])
except Exception as err:
    print(type(err).__name__, sorted(m for m in ("torch", "segmentation_models_pytorch") if m in sys.modules))
"""


def test_status_refuses_a_bad_config_before_loading_torch():
    """run.sh asks status first: a config error is one line at once, not after the model libraries load."""
    out = subprocess.run([sys.executable, "-c", STATUS_CONFIG_ERROR], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["PipelineError", "[]"], out.stdout + out.stderr


def test_run_sh_asks_status_to_check_the_encoder_too(tmp_path, capsys):
    from pipeline import status
    with pytest.raises(PipelineError, match=r"model\.encoder = 'resnet35': not a registered name"):
        status.main(["--config", DEMO, "--check-encoder", "--name", "model.encoder=resnet35"])
    status.main(["--config", DEMO, "--name", "model.encoder=resnet35"])  # alone, status builds no model
    assert capsys.readouterr().out.startswith("demo-")
