import sys

import numpy as np
import pandas as pd
import pytest

from pipeline import submit
from pipeline.lib import rle
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import WorkLayout
from pipeline.lib.probs import Probs, load_probs, save_probs, to_levels


def fake_test_probs(demo_input, work, name="exp", drop=0):
    ids = pd.read_csv(demo_input / "sample_submission.csv", dtype=str)["id"].tolist()[::-1]
    rng = np.random.default_rng(0)
    probs = rng.random((len(ids), 101, 101)) ** 3
    save_probs(WorkLayout(work).experiment(name).test_probs, Probs(np.array(ids[drop:]), to_levels(probs[drop:])))
    return ids, probs


def test_probs_round_trip(tmp_path):
    probs = Probs(np.array(["a", "b"]), to_levels(np.random.default_rng(0).random((2, 101, 101))),
                  np.array([0.1, 0.9], np.float32))
    save_probs(tmp_path / "p.npz", probs)
    back = load_probs(tmp_path / "p.npz")
    assert back.ids.tolist() == ["a", "b"] and (back.levels == probs.levels).all()
    assert np.allclose(back.salt_prob, [0.1, 0.9])
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary file left


def test_submission_has_sample_ids_in_order_and_valid_rle(demo_input, tmp_path):
    ids, probs = fake_test_probs(demo_input, tmp_path)
    submit.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--experiments", "exp",
                 "--threshold", "0.6"])
    frame = pd.read_csv(tmp_path / "submissions" / "exp.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["id", "rle_mask"]
    assert frame["id"].tolist() == ids[::-1]  # sample_submission's order
    by_id = dict(zip(ids, probs))
    for image_id, code in zip(frame["id"], frame["rle_mask"]):
        assert (rle.decode(code) == (to_levels(by_id[image_id]) > 0.6 * 255)).all()


def test_submission_refuses_probabilities_for_other_ids(demo_input, tmp_path):
    fake_test_probs(demo_input, tmp_path, drop=3)
    with pytest.raises(PipelineError, match="no stored probabilities"):
        submit.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--experiments", "exp"])
    assert not (tmp_path / "submissions" / "exp.csv").exists()


def test_submission_without_predictions_names_the_stage(demo_input, tmp_path):
    with pytest.raises(PipelineError, match="pipeline.predict"):
        submit.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--experiments", "none"])


def test_experiments_on_different_splits_are_not_averaged(demo_input, tmp_path):
    """Their out-of-fold files hold other images per fold: averaging them fold by fold would mix images."""
    from pipeline.lib.config import load_config, save_config
    from pipeline.lib.paths import CONFIG_DIR
    work = WorkLayout(tmp_path)
    for name, n_folds in {"three": 3, "five": 5}.items():
        config = load_config(CONFIG_DIR / "demo.yaml", [f"data.n_folds={n_folds}"])
        save_config(work.experiment(name).config_yaml, config)
    with pytest.raises(PipelineError, match=r"three, five were trained on different splits \(3 folds by coverage, 5 folds by coverage"):
        submit.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--experiments", "three,five"])
    assert not work.experiment("three+five").root.exists()


@pytest.mark.parametrize("lacking, words", [("client", "the kaggle client is not installed"),
                                             ("network", r"api.kaggle.com cannot be reached \(offline\)")])
def test_kaggle_message_without_what_it_needs_changes_nothing(demo_input, tmp_path, monkeypatch, lacking, words):
    """Submitting through the real client is tested in test_kaggle_api.py, against a stand-in for Kaggle."""
    fake_test_probs(demo_input, tmp_path)
    if lacking == "client":
        for name in ("kaggle", "kaggle.api.kaggle_api_extended"):  # importing it fails, as when it is not installed
            monkeypatch.setitem(sys.modules, name, None)
    else:
        monkeypatch.setattr("pipeline.lib.kaggle_api.answers", lambda host, port: False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(PipelineError, match=words):
        submit.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--experiments", "exp",
                     "--kaggle-message", "x"])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
