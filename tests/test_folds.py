"""The coverage-stratified split (lib/folds.py and the folds stage) and `--fold` lists."""
import numpy as np
import pandas as pd
import pytest

from pipeline.folds import main
from pipeline.lib.errors import PipelineError
from pipeline.lib.folds import coverage_classes, fold_list, make_folds, read_folds
from pipeline.lib.paths import WorkLayout


def fake_coverage(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.4, 0.0, rng.random(n))


def test_coverage_classes():
    assert coverage_classes([0.0, 0.01, 0.5, 1.0]).tolist() == [0, 1, 6, 10]


def test_folds_are_deterministic_and_ignore_input_order():
    ids = [f"id{n:04d}" for n in range(500)]
    cov = fake_coverage()
    a = make_folds(ids, cov, 5, seed=7)
    b = make_folds(ids[::-1], cov[::-1], 5, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not make_folds(ids, cov, 5, seed=8)["fold"].equals(a["fold"])


def test_folds_are_balanced():
    frame = make_folds([f"id{n}" for n in range(503)], fake_coverage(503), 5)
    sizes = frame.groupby("fold").size()
    assert sizes.max() - sizes.min() <= 1
    empty = frame.groupby("fold")["coverage"].apply(lambda c: (c == 0).mean())
    assert empty.max() - empty.min() <= 0.02
    assert set(frame["fold"]) == set(range(5))


def test_stage_writes_once_and_refuses_other_data(demo_input, own_demo, tmp_path, capsys):
    work = tmp_path / "work"
    main(["--input", str(demo_input), "--workdir", str(work)])
    first = (work / "folds" / "folds.csv").read_text()
    main(["--input", str(demo_input), "--workdir", str(work), "--seed", "9"])
    assert (work / "folds" / "folds.csv").read_text() == first  # not overwritten without --force
    assert "reusing" in capsys.readouterr().out
    with pytest.raises(PipelineError, match="--force"):
        main(["--input", str(own_demo), "--workdir", str(work)])
    main(["--input", str(own_demo), "--workdir", str(work), "--force"])
    assert len(read_folds(WorkLayout(work), pd.read_csv(own_demo / "train.csv", dtype=str)["id"])) == 30


def test_a_config_with_another_number_of_folds_gets_its_own_split(demo_input, tmp_path):
    """run.sh passes the config: data.n_folds=3 writes folds-3.csv beside the 5-fold folds.csv, and each
    config's stages read their own."""
    from pipeline.lib.paths import CONFIG_DIR
    work = tmp_path / "work"
    where = ["--input", str(demo_input), "--workdir", str(work)]
    main(where)
    five = (work / "folds" / "folds.csv").read_text()
    main([*where, "--config", str(CONFIG_DIR / "cpu.yaml"), "data.n_folds=3"])
    ids = pd.read_csv(demo_input / "train.csv", dtype=str)["id"]
    assert set(read_folds(WorkLayout(work, 3), ids)["fold"]) == {0, 1, 2}
    assert (work / "folds" / "folds.csv").read_text() == five
    assert set(read_folds(WorkLayout(work), ids)["fold"]) == set(range(5))
    with pytest.raises(PipelineError, match="need --config"):
        main([*where, "data.n_folds=3"])


def test_fold_argument_takes_a_number_a_list_or_all(tmp_path):
    work = WorkLayout(tmp_path)
    assert fold_list("2", work) == [2] and fold_list("3,0,3", work) == [0, 3]
    with pytest.raises(PipelineError, match="pipeline.folds"):
        fold_list("all", work)
    with pytest.raises(PipelineError, match="--fold must be"):
        fold_list("first", work)
