"""What each stage records beside its outputs, and the check every stage runs before reusing them.

  trained fold  fold_K/done.json   training data, split, pseudo-labels, config data/model/augment/train,
                                   start weights (none, imagenet, or a named file's content)
  predict       predict.json       each used fold's done.json, training and test data, split, config predict
                                   with the precision `cpu_precision: auto` resolves to on this machine
  tune          tune.json          predict.json, config tune
  submit        submit.json        predict.json, tune.json (or the flags' decision), sample_submission ids
  ensemble      predict.json       each member's predict.json
  mosaic        mosaic/mosaic.json training and test data, the matching settings

Every cheap stage goes through one `Stage` (its record, identity and outputs): begin (say the state, skip
or work), write the outputs, finish (the record, last). `status` and the leaderboard build the same Stages.

Cheap stages redo their work when the record differs from now; a trained fold that differs is never
reused (see `untrained_folds`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .distributed import local_devices
from .errors import PipelineError
from .identity import changes, describe, digest, training_sections
from .paths import ExperimentLayout, WorkLayout
from .runtime import Precision
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
    settings["precision"] = ",".join(sorted({Precision.inference(amp, cpu_precision, d).name for d in local_devices()}))
    return {"train_data": train_digest, "test_data": test_digest, "split": split,
            "folds": {str(f): record_digest(exp.done_marker(f)) for f in folds},
            "config": {"predict": settings}}


def submit_identity(exp: ExperimentLayout, decision, sample_ids: list[str], mosaic_record: Path) -> dict:
    """(Paths are no part of an identity: a work folder copied elsewhere stays up to date.) With neighbour
    rules in the decision, the mosaic they read too."""
    identity = {"predictions": record_digest(exp.predict_json), "decision": decision.to_dict(),
                "sample_ids": digest(sample_ids)}
    if decision.rules:
        identity["mosaic"] = record_digest(mosaic_record)
    return identity


def tune_identity(exp: ExperimentLayout, section, mosaic_record: Path) -> dict:
    """With neighbour rules to try, the mosaic they read too."""
    identity = {"predictions": record_digest(exp.predict_json), "config": {"tune": section.model_dump(mode="json")}}
    if section.neighbour_rules:
        identity["mosaic"] = record_digest(mosaic_record)
    return identity


def ensemble_identity(members: list[ExperimentLayout], combine: str = "mean") -> dict:
    """An ensemble's predictions are made from its members' (their predict.json records) and how they are
    combined (the mean is not named, so records written before there was a choice stay valid)."""
    identity = {"members": {exp.root.name: record_digest(exp.predict_json) for exp in members}}
    return identity if combine == "mean" else {**identity, "combine": combine}


@dataclass(frozen=True)
class Stage:
    """One stage's record protocol: the record it writes last, the identity of what it would be made from
    now, and the outputs the record stands for. `begin` says the state and whether to work; `finish` writes
    the record after every output. `status` and the leaderboard read the same objects."""

    name: str
    record: Path
    identity: dict
    outputs: tuple[Path, ...] = ()

    def state(self) -> tuple[str, list[str]]:
        return state(self.record, self.identity, list(self.outputs))

    def begin(self, force: bool = False) -> bool:
        """Print the state; True when the work must be done (not up to date, or forced)."""
        status = self.state()
        say(self.name, status)
        return force or status[0] != "up to date"

    def finish(self, **facts) -> None:
        write_record(self.record, self.identity, **facts)


def predict_stage(config, exp: ExperimentLayout, folds: list[int], train_digest: str, test_digest: str,
                  split: str) -> Stage:
    identity = predict_identity(config, exp, folds, train_digest, test_digest, split)
    return Stage("predict", exp.predict_json, identity, tuple(exp.prediction_files(folds)))


def tune_stage(exp: ExperimentLayout, section, mosaic_record: Path) -> Stage:
    return Stage("tune", exp.tune_json, tune_identity(exp, section, mosaic_record),
                 (exp.oof_scores_csv, exp.threshold_png, exp.val_overlay_png, exp.coverage_png))


def submit_stage(exp: ExperimentLayout, decision, sample_ids: list[str], csv: Path, mosaic_record: Path) -> Stage:
    return Stage("submit", exp.submit_json, submit_identity(exp, decision, sample_ids, mosaic_record), (csv,))


def mosaic_stage(work: WorkLayout, train_digest: str, test_digest: str, matching: dict) -> Stage:
    identity = {"train_data": train_digest, "test_data": test_digest, "matching": matching}
    return Stage("mosaic", work.mosaic_json, identity, (work.mosaic_csv,))


def mosaic_made_from(work: WorkLayout, train_digest: str) -> str:
    """The mosaic record as one part of another identity, once checked to be of this training data."""
    recorded = recorded_identity(work.mosaic_json)
    if recorded is None or not work.mosaic_csv.exists():
        raise PipelineError(f"{work.mosaic_csv} is missing; run `python -m pipeline.mosaic` first (run.sh does)")
    if recorded.get("train_data") != train_digest:
        raise PipelineError(f"{work.mosaic_csv} was made from other training data; rebuild it with "
                            "`python -m pipeline.mosaic --force`")
    return record_digest(work.mosaic_json)


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


def untrained_folds(exp: ExperimentLayout, folds: list[int], identity: dict) -> list[int]:
    """The one answer to "is this fold trained?": the folds of `folds` not trained for exactly these inputs
    (`identity`: `FoldInputs.identity`). A fold trained for other inputs raises an error naming what changed:
    its weights must never be reused or mixed."""
    untrained = []
    for fold in folds:
        word, changed = state(exp.done_marker(fold), identity)
        if word == "stale":
            only_config = all("." in change for change in changed)  # config keys look like train.lr
            way = ("retrain it with --force, or give the changed config a new file name (a new experiment)"
                   if only_config else "retrain it with --force")
            raise PipelineError(f"fold {fold} of '{exp.root.name}' was trained with other inputs "
                                f"({describe(changed)}); {way}")
        if word != "up to date":
            untrained.append(fold)
    return untrained


def require_trained(exp: ExperimentLayout, folds: list[int], identity: dict) -> None:
    """Every fold of `folds` trained for exactly these inputs, or one line naming the first that is not."""
    untrained = untrained_folds(exp, folds, identity)
    if untrained:
        raise PipelineError(f"fold {untrained[0]} of '{exp.root.name}' is not trained; run "
                            f"`python -m pipeline.train --config ... --fold {untrained[0]}` first")


def write_record(path: Path, identity: dict, **facts) -> None:
    write_json(path, {"identity": identity, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **facts})


def record_digest(path: Path) -> str:
    """Another record as one part of an identity: any rewrite of it (a retrained fold) makes a change."""
    return digest(path.read_bytes()) if path.exists() else "missing"


def fold_states(exp: ExperimentLayout, folds: list[int], identity: dict) -> tuple[str, list[str]]:
    """One answer for all folds: up to date when every fold is; else what is missing or stale."""
    states = {fold: state(exp.done_marker(fold), identity) for fold in folds}
    stale = {fold: changed for fold, (word, changed) in states.items() if word == "stale"}
    missing = [fold for fold, (word, _) in states.items() if word == "missing"]
    if stale:
        fold, changed = next(iter(stale.items()))
        return "stale", [f"fold(s) {', '.join(map(str, stale))} trained with other inputs ({describe(changed)})"]
    if missing:
        return "missing", [f"fold(s) {', '.join(map(str, missing))} not trained"]
    return "up to date", []


def experiment_states(config, inputs, test_digest: str, decision, sample_ids: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Each stage's state for an experiment (`inputs`: the work folder's `FoldInputs`): what `status` prints
    and the leaderboard tabulates."""
    work = inputs.work
    exp, folds = work.experiment(config.name), inputs.folds
    states = {"train": fold_states(exp, folds, inputs.identity(config))}
    for stage in (predict_stage(config, exp, folds, inputs.train.digest, test_digest, inputs.split_digest),
                  tune_stage(exp, config.tune, work.mosaic_json),
                  submit_stage(exp, decision, sample_ids, work.submission_csv(config.name), work.mosaic_json)):
        states[stage.name] = stage.state()
    return after_upstream(states)


def after_upstream(states: dict[str, tuple[str, list[str]]]) -> dict[str, tuple[str, list[str]]]:
    """Stages in order: one up to date by its own record is stale when a stage before it is not (its record
    still names the outputs that stage is about to redo, e.g. predictions of folds trained otherwise)."""
    first = next(((stage, word) for stage, (word, _) in states.items() if word != "up to date"), None)
    if first is None:
        return states
    later = list(states)[list(states).index(first[0]) + 1:]
    return {stage: ("stale", [f"{first[0]} is {first[1]}"]) if stage in later and word == "up to date" else
            (word, changed) for stage, (word, changed) in states.items()}


def ensemble_states(exp: ExperimentLayout, members: list[ExperimentLayout], tune_section, decision,
                    sample_ids: list[str], csv: Path, mosaic_record: Path,
                    combine: str = "mean") -> dict[str, tuple[str, list[str]]]:
    """An ensemble's (submit --experiments a,b): its combined predictions, their tuning, its submission."""
    return {"predict": Stage("ensemble", exp.predict_json, ensemble_identity(members, combine)).state(),
            "tune": tune_stage(exp, tune_section, mosaic_record).state(),
            "submit": submit_stage(exp, decision, sample_ids, csv, mosaic_record).state()}
