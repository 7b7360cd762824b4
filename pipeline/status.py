"""Stage: say, for each stage of an experiment, whether its outputs are up to date, stale (and what
changed) or missing, without running anything.

    python -m pipeline.status --config pipeline/configs/default.yaml [key=value ...]
    python -m pipeline.status --config ... --name        # only the experiment's name (run.sh uses it)
"""
from __future__ import annotations

from .lib import cli
from .lib.config import load_config
from .lib.data import load_test, load_train
from .lib.errors import PipelineError, run_stage
from .lib.folds import read_folds, split_digest
from .lib.identity import describe
from .lib.postprocess import stored_decision
from .lib.records import fold_identity, predict_identity, say, state, submit_identity
from .lib.submission import sample_ids
from .lib.tuning import tune_identity


def fold_states(config, exp, folds, identity) -> tuple[str, list[str]]:
    """One line for all folds: up to date when every fold is; else what is missing or stale."""
    states = {fold: state(exp.done_marker(fold), identity) for fold in folds}
    stale = {fold: changed for fold, (word, changed) in states.items() if word == "stale"}
    missing = [fold for fold, (word, _) in states.items() if word == "missing"]
    if stale:
        fold, changed = next(iter(stale.items()))
        return "stale", [f"fold(s) {', '.join(map(str, stale))} trained with other inputs ({describe(changed)})"]
    if missing:
        return "missing", [f"fold(s) {', '.join(map(str, missing))} not trained"]
    return "up to date", []


def report(config, layout, work) -> None:
    exp = work.experiment(config.name)
    train, test = load_train(layout, work), load_test(layout, work)
    try:
        frame = read_folds(work, train.ids)
    except PipelineError as err:
        say("folds", ("missing", [str(err)]))
        return
    say("folds", ("up to date", []))
    split = split_digest(frame)
    folds = sorted(set(frame["fold"].tolist()))
    say("train", fold_states(config, exp, folds, fold_identity(config, work, train.digest, split)))
    say("predict", state(exp.predict_json, predict_identity(config, exp, folds, train.digest, test.digest, split),
                         exp.prediction_files(folds)))
    say("tune", state(exp.tune_json, tune_identity(exp, config.tune)))
    out = work.submission_csv(config.name)
    submitted = submit_identity(exp, stored_decision(exp), sample_ids(layout))
    say("submit", state(exp.submit_json, submitted, [out]))


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--name", action="store_true", help="print only the experiment's name")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    if args.name:
        print(config.name)
        return
    print(f"experiment {config.name}" + (f" ({args.config} with {' '.join(args.overrides)})" if args.overrides else ""))
    layout, work = cli.layouts(args, lock=False, n_folds=config.data.n_folds)  # reads only: works beside a running job
    report(config, layout, work)


if __name__ == "__main__":
    run_stage(main)
