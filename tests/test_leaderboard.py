"""The leaderboard of a work folder and its report: rows, states, what each experiment changed, the page."""
import json
from html.parser import HTMLParser

import pandas as pd
import pytest

from pipeline import folds, leaderboard
from pipeline.lib.config import load_config, save_config
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import CONFIG_DIR, WorkLayout
from pipeline.lib.store import write_json


def fake_experiment(work, name, cv, overrides=()):
    """A trained-and-tuned experiment's records (no weights): config, made_from.json, folds, tune.json."""
    config = load_config(CONFIG_DIR / "demo.yaml", list(overrides))
    exp = work.experiment(name)
    save_config(exp.config_yaml, config, exp.made_from_json)
    for fold in range(3):
        exp.fold_dir(fold).mkdir(parents=True, exist_ok=True)
        write_json(exp.done_marker(fold), {"identity": {}, "epochs": 3, "start_weights": "none (random)",
                                           "precision": "none"})
        pd.DataFrame({"epoch": [0, 1], "seconds": [30.0, 30.0]}).to_csv(exp.log_csv(fold), index=False)
    write_json(exp.tune_json, {"identity": {}, "cv_score": cv, "cv_score_at_0.5": cv - 0.01, "images": 60,
                               "fold_scores": {"0": cv - 0.02, "1": cv, "2": cv + 0.02},
                               "decision": {"threshold": 0.45, "min_area": 10, "empty_cut": None}})
    return exp


@pytest.fixture
def board(demo_input, tmp_path):
    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "3"])
    work = WorkLayout(tmp_path, n_folds=3)
    fake_experiment(work, "demo", 0.71)
    fake_experiment(work, "demo-lr", 0.74, ["train.lr=0.01"])
    fake_experiment(work, "broken", 0.5).tune_json.write_text("{not json")
    half = fake_experiment(work, "half", 0.0)
    half.tune_json.unlink()  # trained, never predicted
    ensemble = work.experiment("demo+demo-lr")
    ensemble.root.mkdir(parents=True)
    write_json(ensemble.predict_json, {"identity": {"members": {"demo": "x", "demo-lr": "y"}}})
    write_json(ensemble.tune_json, {"identity": {}, "cv_score": 0.76, "cv_score_at_0.5": 0.7,
                                    "fold_scores": {"0": 0.76}, "decision": {"threshold": 0.5, "min_area": 0}})
    (work.experiment("demo").root / "test_probs.npz").write_bytes(b"PK\x03\x04 truncated")
    leaderboard.main(["--input", str(demo_input), "--workdir", str(tmp_path)])
    return work, pd.read_csv(work.leaderboard_csv, dtype={"experiment": str})


def test_every_experiment_is_a_row_best_cv_first(board):
    work, frame = board
    assert frame["experiment"].tolist() == ["demo+demo-lr", "demo-lr", "demo", "broken", "half"]
    for name, cv in zip(frame["experiment"], frame["cv"]):
        if cv == cv:  # not NaN
            assert cv == json.loads(work.experiment(name).tune_json.read_text())["cv_score"]
    row = frame.set_index("experiment").loc["demo-lr"]
    assert row["fold_mean"] == pytest.approx(0.74) and row["fold_std"] > 0 and row["train_minutes"] == 3.0
    assert row["changed"] == "train.lr 0.003 -> 0.01" and row["epochs"] == 3
    assert frame.set_index("experiment").loc["demo+demo-lr", "kind"] == "ensemble"
    assert (work.leaderboard_md.read_text().splitlines()[0]).startswith("| experiment | kind | cv |")


def test_what_is_wrong_with_an_experiment_is_said_in_its_row(board):
    _, frame = board
    states = frame.set_index("experiment")["state"]
    assert "tune.json is not valid JSON" in states["broken"]
    assert "test_probs.npz is damaged; rerun predict with --force" in states["demo"]
    assert states["half"].startswith("train: stale") or "predict: missing" in states["half"]
    assert not states.str.contains("Traceback").any()


def test_no_experiments_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match=f"no experiments in {tmp_path / 'experiments'}; train one first"):
        leaderboard.main(["--workdir", str(tmp_path)])


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.sources, self.scripts, self.cell, self.row = [], [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.row = []
        if tag in ("td", "th"):
            self.cell = ""
        if tag in ("img", "script", "link") and (attrs.get("src") or attrs.get("href")):
            self.sources.append(attrs.get("src") or attrs.get("href"))

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.row.append(self.cell)
            self.cell = None
        if tag == "tr":
            self.rows.append(self.row)


def test_the_report_is_one_self_contained_page(board, tmp_path):
    work, frame = board
    page = Page()
    page.feed(work.report_html.read_text())
    assert page.rows[0][:3] == ["experiment", "kind", "cv"]
    assert [row[0] for row in page.rows[1:]] == frame["experiment"].tolist()
    assert all(src.startswith("data:image/png;base64,") for src in page.sources)  # nothing from the network


def test_leaderboard_scores_come_from_the_recorded_submissions(board, demo_input, tmp_path, monkeypatch):
    work, _ = board
    exp = work.experiment("demo-lr")
    write_json(exp.kaggle_submissions_json, {"submissions": [{"message": "demo-lr: CV 0.7400 - try", "file": "x"}]})
    listed = [{"ref": 1, "description": "demo-lr: CV 0.7400 - try", "status": "COMPLETE", "public_score": 0.801,
               "private_score": 0.823}]  # kaggle_api.list_submissions's rows (read from Kaggle: test_kaggle_api.py)
    monkeypatch.setattr("pipeline.lib.kaggle_api.client", lambda: None)
    monkeypatch.setattr("pipeline.lib.kaggle_api.list_submissions", lambda api: listed)
    leaderboard.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--fetch-lb"])
    row = pd.read_csv(work.leaderboard_csv).set_index("experiment").loc["demo-lr"]
    assert (row["lb_public"], row["lb_private"]) == (0.801, 0.823)
    assert json.loads(exp.kaggle_submissions_json.read_text())["submissions"][0]["public_score"] == 0.801
