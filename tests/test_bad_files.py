"""A damaged artifact that a stage reads is one line naming the file and the fix, never a traceback; so is a
full disk at any write, which leaves what was there before."""
import errno
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.lib.cli import run_stage
from pipeline.lib.errors import PipelineError
from pipeline.lib.folds import read_folds
from pipeline.lib.paths import WorkLayout
from pipeline.lib.postprocess import stored_decision
from pipeline.lib.probs import Probs, load_probs, save_probs, to_levels


def saved_probs(tmp_path):
    path = tmp_path / "probs.npz"
    save_probs(path, Probs(np.array(["a", "b"]), to_levels(np.full((2, 101, 101), 0.5))))
    return path


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:200]),  # truncated
    lambda p: p.write_bytes(b"garbage"),
    lambda p: np.savez(p, ids=np.array(["a"]), other=np.zeros(3)),  # no probs array
    lambda p: np.savez(p, ids=np.array(["a", "b"]), probs=np.zeros((2, 101, 101), np.float32)),  # not uint8
])
def test_damaged_probability_file(tmp_path, damage):
    path = saved_probs(tmp_path)
    damage(path)
    with pytest.raises(PipelineError, match=rf"{path} is not a valid probability file .*rerun the predict stage"):
        load_probs(path)


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ('{"cv_score": 0.8}', "lacks a valid decision"),
    ('{"decision": {"threshold": "high"}}', "lacks a valid decision"),
])
def test_damaged_tune_json(tmp_path, text, message):
    exp = WorkLayout(tmp_path).experiment("exp")
    exp.root.mkdir(parents=True)
    exp.tune_json.write_text(text)
    with pytest.raises(PipelineError, match=message) as err:
        stored_decision(exp)
    assert str(exp.tune_json) in str(err.value)


@pytest.mark.parametrize("text", ["", "id,fold\na,0\na,1\n", "id,fold\na,zero\nb,1\n", "name,split\na,0\n",
                                  "\x00\x01\x02binary"])
def test_damaged_folds_csv(tmp_path, text):
    work = WorkLayout(tmp_path)
    work.folds_csv.parent.mkdir(parents=True)
    work.folds_csv.write_text(text)
    with pytest.raises(PipelineError, match=rf"{work.folds_csv} .*pipeline.folds --force"):
        read_folds(work, ["a", "b"])


def test_folds_for_other_data(tmp_path):
    work = WorkLayout(tmp_path, n_folds=2)
    work.folds_csv.parent.mkdir(parents=True)
    pd.DataFrame({"id": ["a", "c"], "fold": [0, 1]}).to_csv(work.folds_csv, index=False)
    with pytest.raises(PipelineError, match="made for other training data"):
        read_folds(work, ["a", "b"])


def test_folds_of_another_count(tmp_path):
    """A folds.csv written by hand (or an older --n-folds) with 3 folds where the config asks for 5."""
    work = WorkLayout(tmp_path)
    work.folds_csv.parent.mkdir(parents=True)
    pd.DataFrame({"id": ["a", "b", "c"], "fold": [0, 1, 2]}).to_csv(work.folds_csv, index=False)
    with pytest.raises(PipelineError, match=rf"{work.folds_csv} holds 3 folds, not the 5 asked for \(data.n_folds or "
                                            r"--n-folds\); rewrite it with `python -m pipeline.folds --n-folds 5 --force`"):
        read_folds(work, ["a", "b", "c"])


def test_a_missing_split_names_its_file_and_number_of_folds(tmp_path):
    work = WorkLayout(tmp_path, n_folds=3)
    with pytest.raises(PipelineError, match=rf"{work.folds_csv} is missing; run `python -m pipeline.folds --n-folds 3`"):
        read_folds(work, ["a", "b", "c"])


def files(root):
    return {path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def stage_on_full_disk(stage: str, demo_input, work, failing: int | None, monkeypatch) -> list[str]:
    """Run `stage` with its `failing`-th atomic write (0-based) hitting a full disk; the writes it made."""
    from pipeline import folds, submit
    from pipeline.lib import store
    real, made = store.fsync, []

    def fsync(path):
        if Path(path).name.startswith("."):  # a temporary file about to be renamed into place
            if len(made) == failing:
                raise OSError(errno.ENOSPC, "No space left on device")
            made.append(Path(path).name)
        real(path)

    monkeypatch.setattr(store, "fsync", fsync)
    where = ["--input", str(demo_input), "--workdir", str(work)]
    main, argv = {"folds": (folds.main, where), "submit": (submit.main, [*where, "--experiments", "exp"])}[stage]
    run_stage(main, argv)
    return made


@pytest.mark.slow
@pytest.mark.parametrize("stage, writes", [("folds", 3), ("submit", 4)])
def test_a_full_disk_at_each_write_of_a_stage_is_one_line_and_keeps_what_was_there(
        demo_input, tmp_path, monkeypatch, capsys, stage, writes):
    from tests.test_submit import fake_test_probs
    prepared = tmp_path / "prepared"
    fake_test_probs(demo_input, prepared)
    shutil.copytree(prepared, tmp_path / "count")
    with monkeypatch.context() as patched:
        assert len(stage_on_full_disk(stage, demo_input, tmp_path / "count", None, patched)) == writes
    for failing in range(writes):
        work = tmp_path / f"fail-{failing}"
        shutil.copytree(prepared, work)
        before = files(work)
        with monkeypatch.context() as patched, pytest.raises(SystemExit) as exit_info:
            stage_on_full_disk(stage, demo_input, work, failing, patched)
        said = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(said) == 1 and said[0].startswith("error: no space left on the disk for ")
        after = files(work)
        assert all(after.get(path) == body for path, body in before.items())  # what was there is untouched
        assert not [path for path in after if path.name.endswith(".tmp")]  # nothing half-written stays
