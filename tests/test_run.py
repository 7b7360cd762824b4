"""The whole-pipeline entry point (pipeline.run, what run.sh calls), kernel mode, the installed command."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import command, run
from pipeline.lib import paths
from pipeline.lib.config import load_config


def test_overrides_come_after_the_separator_or_bare():
    args = run.parse(["--config", "cpu.yaml", "train.epochs=2", "--", "train.lr=0.01"])
    assert args.config == "cpu.yaml" and args.overrides == ["train.epochs=2", "train.lr=0.01"]
    assert run.wanted(run.parse(["--from", "tune"]), "submit") and not run.wanted(run.parse(["--from", "tune"]), "train")
    assert run.wanted(run.parse(["--only", "predict"]), "predict") and not run.wanted(run.parse(["--only", "predict"]), "tune")


def test_an_unknown_stage_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit:
        run.parse(["--only", "bake"])
    assert exit.value.code == 2 and "unknown stage 'bake'; stages: mosaic folds train predict tune submit" in capsys.readouterr().err


def test_kernel_mode_drops_finished_folds_resume_checkpoints(tmp_path):
    exp = paths.WorkLayout(tmp_path).experiment("cpu")
    for fold in (0, 1):
        exp.fold_dir(fold).mkdir(parents=True)
        exp.last_checkpoint(fold).write_bytes(b"x" * 1000)
        exp.best_checkpoint(fold).write_bytes(b"best")
    exp.done_marker(0).write_text("{}")  # fold 1 is unfinished: its last.pt is how it resumes
    run.prune_resume_checkpoints(exp)
    assert not exp.last_checkpoint(0).exists() and exp.best_checkpoint(0).exists() and exp.last_checkpoint(1).exists()


def test_kernel_mode_publishes_the_submission_where_kaggle_takes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "KAGGLE_WORKING", tmp_path / "working")
    (tmp_path / "working").mkdir()
    csv = tmp_path / "cpu.csv"
    csv.write_text("id,rle_mask\na,1 2\n")
    run.publish_submission(csv)
    assert (tmp_path / "working" / "submission.csv").read_text() == csv.read_text()
    assert sorted(p.name for p in (tmp_path / "working").iterdir()) == ["submission.csv"]


def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("cpu", "cpu.yaml", "pipeline/configs/cpu.yaml"):
        assert paths.config_file(name) == paths.CONFIG_DIR / "cpu.yaml"
    assert paths.config_file("ablations/scse.yaml") == paths.CONFIG_DIR / "ablations" / "scse.yaml"
    (tmp_path / "cpu.yaml").write_text("base: x")
    assert paths.config_file("cpu.yaml") == tmp_path.joinpath("cpu.yaml").relative_to(tmp_path)  # a user's own wins


@pytest.mark.parametrize("gpus, recipe", [(0, "cpu-long.yaml"), (2, "default.yaml")])
def test_without_a_config_the_hardware_picks_a_shipped_recipe(gpus, recipe, capsys):
    chosen = run.choose_config(run.parse([]), demo=False, gpus=gpus)
    assert Path(chosen) == paths.CONFIG_DIR / recipe and recipe in capsys.readouterr().out
    train = load_config(chosen, encoder=False).train  # the recipe loads and passes every check
    assert gpus or (train.epochs, train.switch_epoch) == (28, 8)


def test_the_command_names_its_commands(capsys):
    command.main([])
    assert "tgs-salt COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown command 'trian'; commands: run, mosaic, folds, train"):
        command.main(["trian"])
    modules = {p.stem for p in (paths.PACKAGE).glob("*.py")}
    assert set(command.COMMANDS) <= modules


def test_the_command_runs_a_stage():
    result = subprocess.run([sys.executable, "-m", "pipeline.command", "status", "--help"], capture_output=True,
                            text=True, cwd=paths.REPO)
    assert result.returncode == 0 and "--config" in result.stdout and not result.stderr


def test_the_package_data_covers_every_config():
    from pipeline.lib.requirements import read_toml
    patterns = read_toml(paths.REPO / "pyproject.toml")["tool"]["setuptools"]["package-data"]["pipeline"]
    shipped = {p.relative_to(paths.PACKAGE) for pattern in patterns for p in paths.PACKAGE.glob(pattern)}
    assert shipped == set(p.relative_to(paths.PACKAGE) for p in paths.CONFIG_DIR.rglob("*.yaml"))


def processes_naming(text: str) -> list[int]:
    """Pids of the live processes whose command line holds `text` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                if (entry / "stat").read_text().split(")")[-1].split()[0] != "Z":  # not a zombie
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc (Linux)")
def test_a_killed_run_takes_its_stages_with_it_and_frees_the_work_folder(tmp_path):
    """`kill -9` of pipeline.run while a fold trains: within a second no stage of it is alive, and the next
    run on the work folder goes ahead (the stage once trained on, unlocked, beside the second run)."""
    work = tmp_path / "work"
    first = subprocess.Popen([sys.executable, "-m", "pipeline.run", "--demo", "--workdir", str(work)], cwd=paths.REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: any(pid != first.pid for pid in processes_naming("pipeline.train")
                                    if str(work) in Path(f"/proc/{pid}/cmdline").read_text()), 240)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert wait_for(lambda: not processes_naming(str(work)), 1.0), processes_naming(str(work))
    finally:
        os.killpg(first.pid, signal.SIGKILL) if processes_naming(str(work)) else None
    second = subprocess.run([sys.executable, "-m", "pipeline.folds", "--input", str(work / "demo-input"),
                             "--workdir", str(work)], cwd=paths.REPO, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr


@pytest.mark.slow
def test_a_stage_whose_run_has_ended_does_not_go_on_unlocked(tmp_path, demo_input):
    """A stage started under a run's lock (the environment says so) checks that the lock is still held."""
    env = {**os.environ, "TGS_LOCKED_WORKDIR": str(tmp_path.resolve())}
    orphan = subprocess.run([sys.executable, "-m", "pipeline.folds", "--input", str(demo_input), "--workdir",
                             str(tmp_path)], cwd=paths.REPO, capture_output=True, text=True, env=env)
    assert orphan.returncode == 2
    assert orphan.stderr.strip() == f"error: the run that started this stage on {tmp_path} has ended; start the run again"
