"""What each stage records beside its outputs, and the check every stage runs before reusing them.

  trained fold  fold_K/done.json   training data, split, pseudo-labels, config data/model/augment/train,
                                   start weights (none, imagenet, or a named file's content)
  predict       predict.json       each used fold's done.json, training and test data, split, config predict
                                   with the precision `cpu_precision: auto` resolves to on this machine
  tune          tune.json          predict.json, config tune
  submit        submit.json        predict.json, tune.json (or the flags' decision), sample_submission ids

Cheap stages redo their work when the record differs from now; a trained fold that differs is never
reused (see `check_fold`).
"""
from __future__ import annotations

import time
from pathlib import Path

from .distributed import local_devices
from .errors import PipelineError
from .identity import changes, describe, digest, training_sections
from .paths import ExperimentLayout, WorkLayout
from .runtime import inference_precision
from .start_weights import start_identity
from .store import read_json, write_json


def fold_identity(config, work: WorkLayout, train_digest: str, split: str) -> dict:
    """What a trained fold depends on; `split`: the split's digest. With `data.pseudo_labels`, the
    pseudo-label file it trains on too."""
    identity = {"train_data": train_digest, "split": split, "config": training_sections(config),
                "start_weights": start_identity(config.model.encoder_weights)}
    if config.data.pseudo_labels:
        identity["pseudo_labels"] = record_digest(work.experiment(config.data.pseudo_labels).pseudo_labels)
    return identity


def predict_identity(config, exp: ExperimentLayout, folds: list[int], train_digest: str, test_digest: str,
                     split: str) -> dict:
    """The precision is recorded as it resolves here: `auto` is bf16 on a CPU with AMX tiles, float32 on one
    without, so probabilities carried to another machine are not reused as if made the same way."""
    settings = config.predict.model_dump(mode="json", exclude={"batch_size"})
    amp, cpu_precision = config.train.amp, config.predict.cpu_precision
    settings["precision"] = ",".join(sorted({inference_precision(amp, cpu_precision, d) for d in local_devices()}))
    return {"train_data": train_digest, "test_data": test_digest, "split": split,
            "folds": {str(f): record_digest(exp.done_marker(f)) for f in folds},
            "config": {"predict": settings}}


def submit_identity(exp: ExperimentLayout, decision, sample_ids: list[str]) -> dict:
    """(Paths are no part of an identity: a work folder copied elsewhere stays up to date.)"""
    return {"predictions": record_digest(exp.predict_json), "decision": decision.to_dict(),
            "sample_ids": digest(sample_ids)}


def recorded_identity(path: Path) -> dict | None:
    """The identity a record holds; None when the record is missing, an empty dict when it has none."""
    if not path.exists():
        return None
    record = read_json(path)
    return record.get("identity", {}) if isinstance(record, dict) else {}


def state(path: Path, identity: dict, outputs: list[Path] = ()) -> tuple[str, list[str]]:
    """("missing" | "up to date" | "stale", what changed) for an artifact's record against now; missing
    too when one of the `outputs` it stands for is gone."""
    recorded = recorded_identity(path)
    if recorded is None or not all(Path(output).exists() for output in outputs):
        return "missing", []
    changed = changes(recorded, identity) if recorded else ["made by an older version of the pipeline"]
    return ("stale", changed) if changed else ("up to date", [])


def say(stage: str, status: tuple[str, list[str]]) -> None:
    word, changed = status
    print(f"{stage}: {word}" + (f": {describe(changed)}" if changed else ""), flush=True)


def check_fold(exp: ExperimentLayout, fold: int, identity: dict) -> bool:
    """True when the fold is trained for exactly these inputs, False when it is not trained; a fold trained
    for other inputs is an error naming what changed, since its weights must never be reused or mixed."""
    word, changed = state(exp.done_marker(fold), identity)
    if word == "stale":
        only_config = all("." in change for change in changed)  # config keys look like train.lr
        way = ("retrain it with --force, or give the changed config a new file name (a new experiment)"
               if only_config else "retrain it with --force")
        raise PipelineError(f"fold {fold} of '{exp.root.name}' was trained with other inputs ({describe(changed)}); {way}")
    return word == "up to date"


def write_record(path: Path, identity: dict, **facts) -> None:
    write_json(path, {"identity": identity, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **facts})


def record_digest(path: Path) -> str:
    """Another record as one part of an identity: any rewrite of it (a retrained fold) makes a change."""
    return digest(path.read_bytes()) if path.exists() else "missing"
