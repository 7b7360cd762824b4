"""The work folder's experiments side by side: one row each (CV tuned and at 0.5, fold mean ± std, the
decision, epochs, training minutes, start weights, precision, state, what it changed against its config
file, the leaderboard score when known), as leaderboard.csv / leaderboard.md and a self-contained report.

An experiment is a folder of experiments/ with a config.yaml (trained) or a predict.json (an ensemble made
by `submit --experiments a,b`). Whatever is wrong with one (half-finished, a damaged tune.json or
probability file) is said in its row; it never stops the table.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import load_config
from .errors import PipelineError
from .identity import changes, describe
from .paths import ExperimentLayout, WorkLayout
from .postprocess import Decision
from .store import read_json

COLUMNS = ["experiment", "kind", "cv", "cv_at_0.5", "fold_mean", "fold_std", "decision", "epochs",
           "train_minutes", "start_weights", "precision", "state", "changed", "lb_public", "lb_private"]


@dataclass
class Entry:
    """One experiment's row and what the report shows of it."""

    name: str
    exp: ExperimentLayout
    row: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def experiment_names(work: WorkLayout) -> list[str]:
    names = work.experiment_names()
    if not names:
        raise PipelineError(f"no experiments in {work.experiments_dir}; train one first (bash run.sh, or "
                            "python -m pipeline.train)")
    return names


def read_record(path: Path, problems: list[str]) -> dict:
    """A JSON record, or {} with the problem noted (missing is no problem: the stage has not run)."""
    if not path.is_file():
        return {}
    try:
        record = read_json(path)
    except PipelineError as err:
        problems.append(str(err))
        return {}
    return record if isinstance(record, dict) else {}


def check_probs(exp: ExperimentLayout, problems: list[str]) -> None:
    """Each stored probability file opens (its zip directory is whole): a damaged one is named."""
    for path in [exp.oof_probs(fold) for fold in exp.folds_on_disk()] + [exp.test_probs]:
        if path.is_file():
            try:
                with zipfile.ZipFile(path) as archive:
                    archive.namelist()
            except (zipfile.BadZipFile, OSError):
                problems.append(f"{path} is damaged; rerun predict with --force")


def tune_columns(tuned: dict) -> dict:
    if not tuned:
        return {}
    folds = np.array(list(tuned.get("fold_scores", {}).values()), float)
    return {"cv": tuned.get("cv_score"), "cv_at_0.5": tuned.get("cv_score_at_0.5"),
            "fold_mean": round(float(folds.mean()), 4) if len(folds) else None,
            "fold_std": round(float(folds.std()), 4) if len(folds) else None,
            "decision": decision_words(tuned.get("decision"))}


def made_of(record: dict) -> str:
    """What an ensemble is made of, from its record: 'mean of a, b', or 'weighted of a, b (test weights 0.6, 0.4)'."""
    identity = record.get("identity", {})
    weights = record.get("weights", {}).get("test")
    return (f"{identity.get('combine', 'mean')} of " + ", ".join(identity.get("members", {}))
            + (f" (test weights {', '.join(map(str, weights))})" if weights else ""))


def decision_words(stored) -> str:
    """A stored decision in words; '' for none or a damaged one (the record's own problem is said elsewhere)."""
    try:
        return Decision.from_dict(stored).describe() if stored else ""
    except (KeyError, TypeError, ValueError):
        return ""


def training_columns(exp: ExperimentLayout, problems: list[str]) -> dict:
    """Epochs, minutes, start weights and precision from the folds' done.json and log.csv."""
    done = [read_record(exp.done_marker(fold), problems) for fold in exp.folds_on_disk()]
    minutes = 0.0
    for log in filter(Path.is_file, map(exp.log_csv, exp.folds_on_disk())):
        try:
            minutes += float(pd.read_csv(log)["seconds"].sum()) / 60
        except (pd.errors.ParserError, pd.errors.EmptyDataError, KeyError, UnicodeDecodeError):
            problems.append(f"{log} is not a readable log")
    pick = lambda key: ", ".join(sorted({str(d[key]) for d in done if key in d}))  # noqa: E731
    return {"epochs": pick("epochs"), "train_minutes": round(minutes, 1) if minutes else None,
            "start_weights": pick("start_weights"), "precision": pick("precision")}


def lb_columns(exp: ExperimentLayout, problems: list[str]) -> dict:
    """The latest submission's leaderboard scores (from submit --kaggle-message, filled by --fetch-lb)."""
    sent = read_record(exp.kaggle_submissions_json, problems).get("submissions", [])
    scored = [s for s in sent if s.get("public_score") is not None]
    last = scored[-1] if scored else {}
    return {"lb_public": last.get("public_score"), "lb_private": last.get("private_score")}


def changed_against_file(exp: ExperimentLayout, problems: list[str]) -> str:
    """What the experiment's resolved config changed against its config file, in words (its overrides)."""
    made = read_record(exp.made_from_json, problems)
    if not made:
        return ""
    try:
        plain = load_config(made["config_file"], encoder=False).resolved()
        mine = load_config(exp.config_yaml, encoder=False).resolved()
    except (PipelineError, KeyError):
        return " ".join(made.get("overrides", []))
    diff = [c for c in changes(plain, mine) if not c.startswith("name")]
    return describe(diff, most=len(diff)) if diff else ""


def summarise(states: dict[str, tuple[str, list[str]]]) -> str:
    """'up to date', or the first stage that is not: 'predict: missing', 'train: stale: fold(s) 0 ...'."""
    for stage, (word, changed) in states.items():
        if word != "up to date":
            return f"{stage}: {word}" + (f": {describe(changed)}" if changed else "")
    return "up to date"


def config_of(exp: ExperimentLayout):
    """The experiment's resolved config, named by its folder (config.yaml's stem is not its name)."""
    return load_config(exp.config_yaml, encoder=False).model_copy(update={"name": exp.root.name})


def entry(work: WorkLayout, name: str, data) -> Entry:
    """One experiment's row; `data(config)` gives its states (None when the input data is not at hand)."""
    exp = work.experiment(name)
    item = Entry(name, exp)
    tuned = read_record(exp.tune_json, item.problems)
    check_probs(exp, item.problems)
    ensemble = not exp.config_yaml.is_file()
    row = {"experiment": name, "kind": "ensemble" if ensemble else "experiment", **tune_columns(tuned),
           **lb_columns(exp, item.problems)}
    try:
        states = data(None if ensemble else config_of(exp), exp)
    except PipelineError as err:
        states, item.problems = None, item.problems + [str(err)]
    if not ensemble:
        row.update(training_columns(exp, item.problems), changed=changed_against_file(exp, item.problems))
    else:  # what it is made of, in the column that says what an experiment changed
        row["changed"] = made_of(read_record(exp.predict_json, item.problems))
    row["state"] = "; ".join(item.problems) if item.problems else (summarise(states) if states else "unknown")
    item.row = {column: row.get(column) for column in COLUMNS}
    return item


def entries(work: WorkLayout, data) -> list[Entry]:
    """Every experiment's entry, best CV first (those without a CV last, by name)."""
    out = [entry(work, name, data) for name in experiment_names(work)]
    return sorted(out, key=lambda e: (e.row["cv"] is None, -(e.row["cv"] or 0), e.name))


def table(items: list[Entry]) -> pd.DataFrame:
    return pd.DataFrame([item.row for item in items], columns=COLUMNS)


def match_scores(sent: list[dict], listed: list[dict]) -> int:
    """Leaderboard scores from Kaggle's list of our submissions (kaggle_api.list_submissions) joined to our
    records by submission ref (records from before refs were kept: by message); how many were filled."""
    by_ref = {item["ref"]: item for item in listed}
    by_message = {item["description"]: item for item in reversed(listed)}  # Kaggle lists newest first: the newest wins
    filled = 0
    for item in sent:
        found = by_ref.get(item["ref"]) if item.get("ref") else by_message.get(item.get("message"))
        if found:
            item["public_score"], item["private_score"] = found["public_score"], found["private_score"]
            filled += 1
    return filled
