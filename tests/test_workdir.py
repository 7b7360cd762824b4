"""The work folder: one run at a time (the lock names its holder), read-only folders, outputs that follow
the umask, generated data made safely by two runs at once."""
import os
import stat
import subprocess
import sys

import pytest

from pipeline.lib.paths import REPO, WorkLayout
from tests.tiny_run import DEMO, TINY, name


@pytest.mark.slow
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


@pytest.mark.slow
def test_demo_generation_is_safe_when_run_twice_at_once(tmp_path):
    command = [sys.executable, "-m", "pipeline.demo", "--out", str(tmp_path / "demo"), "--n-train", "30",
               "--n-test", "10"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    assert [r.wait() for r in runs] == [0, 0]
    assert len(list((tmp_path / "demo" / "train" / "images").glob("*.png"))) == 30
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folder left


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_workdir_is_one_clean_line(copy):
    work = copy / "ro"
    work.mkdir()
    work.chmod(stat.S_IRUSR | stat.S_IXUSR)
    result = subprocess.run([sys.executable, "-m", "pipeline.folds", "--input", str(copy / "input"),
                             "--workdir", str(work)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "pass --workdir DIR" in result.stderr and "Traceback" not in result.stderr


def test_a_read_only_workdir_error_is_one_line(monkeypatch, capsys):
    from pipeline.lib.cli import run_stage

    def fails(argv):
        raise PermissionError(13, "Permission denied", "/ro/folds/folds.csv")

    with pytest.raises(SystemExit) as exit_:
        run_stage(fails)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "cannot write /ro/folds/folds.csv" in err


@pytest.mark.slow
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
