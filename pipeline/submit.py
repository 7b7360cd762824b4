"""Stage: write the Kaggle submission CSV from stored test probabilities.

    python -m pipeline.submit --config pipeline/configs/default.yaml [--threshold T] [--min-area A]
    python -m pipeline.submit --experiments a,b[,...]      # ensemble: average, tune, submit
    python -m pipeline.submit --config ENSEMBLE.yaml       # the same for an ensemble config (lib/ensembles.py)
    python -m pipeline.submit --config ... --kaggle-message "TEXT"   # and send it to Kaggle (the kaggle client)

Reads experiments/<name>/test_probs.npz and the tuned decision (experiments/<name>/tune.json, when
the tune stage has run; 0.5 otherwise); flags override it. Writes submissions/<name>.csv with
exactly sample_submission.csv's ids, in its order, and test_overlays.png beside the experiment.
An ensemble averages the experiments' test and out-of-fold probabilities into experiments/a+b/,
tunes on the averaged out-of-fold set, and writes submissions/a+b.csv. With --kaggle-message the CSV is
submitted through the kaggle client (message: the experiment, its CV and decision, then TEXT) and recorded in
experiments/<name>/kaggle_submissions.json once Kaggle confirms it; without the client, credentials or network,
one line says which, before anything is written.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .lib import cli, kaggle_api, plots
from .lib.blend import combined, tuned_weights
from .lib.config import load_config
from .lib.data import load_test, load_train
from .lib.ensembles import is_ensemble, load_ensemble
from .lib.fold_data import FoldInputs
from .lib.errors import PipelineError
from .lib.folds import read_folds
from .lib.mosaic import read_mosaics
from .lib.neighbours import check_rules, decide_test
from .lib.paths import MOSAIC_PICTURES, InputLayout, WorkLayout
from .lib.postprocess import Decision, masks_from_probs, stored_decision
from .lib.probs import Probs, load_probs, save_probs
from .lib.records import Stage, ensemble_identity, mosaic_made_from, submit_stage
from .lib.store import read_json
from .lib.submission import check_ids, sample_ids, write_submission
from .lib.tuning import run_tune


def with_neighbours(layout: InputLayout, work: WorkLayout, exp, decision: Decision, probs: Probs, masks, test_images):
    """The test masks under the decision's neighbour rules (every training mask known), and the experiment's
    mosaic pictures (test masks, and what the rules changed); as they are without a mosaic."""
    check_rules(decision.rules, str(exp.tune_json))
    if not work.mosaic_json.exists() and not decision.rules:
        return masks
    train = load_train(layout, work)
    mosaic_made_from(work, train.digest)
    mosaics = read_mosaics(work.mosaic_csv, list(train.ids) + list(probs.ids))
    truth, before = dict(zip(train.ids, train.masks)), dict(zip(probs.ids, masks))
    after = decide_test(mosaics, truth, before, decision.rules) if decision.rules else before
    images = {**dict(zip(train.ids, train.images)), **dict(zip(probs.ids, test_images))}
    plots.mosaics(mosaics, images, truth, after,
                  before if decision.rules else None, [exp.mosaic_png(k) for k in range(MOSAIC_PICTURES)],
                  f"{exp.root.name}: ")
    changed = sum(int((after[i] != before[i]).any()) for i in before)
    print(f"neighbour rules {', '.join(decision.rules) or 'none'}: {changed} test masks changed")
    return np.stack([after[i] for i in probs.ids])


def submit(layout: InputLayout, work: WorkLayout, name: str, decision: Decision, force: bool = False) -> Path:
    exp = work.experiment(name)
    ids = sample_ids(layout)
    out = work.submission_csv(name)
    stage = submit_stage(exp, decision, ids, out, work.mosaic_json)
    if not stage.begin(force):
        return out
    probs = check_ids(load_probs(exp.test_probs), ids, exp.test_probs)
    images = load_test(layout, work).images
    masks = with_neighbours(layout, work, exp, decision, probs, masks_from_probs(probs, decision), images)
    pick = np.random.default_rng(0).choice(len(masks), min(32, len(masks)), replace=False)
    plots.overlays(images[pick], masks[pick], exp.test_overlay_png, f"{name}: test",
                   captions=[str(probs.ids[i]) for i in pick])
    write_submission(out, list(probs.ids), masks)  # after everything that could fail
    stage.finish()
    print(f"wrote {out}: {len(masks)} images, {(masks.reshape(len(masks), -1).any(1)).mean():.1%} with salt, "
          f"{decision.describe()}")
    return out


def ensemble(layout: InputLayout, work: WorkLayout, names: list[str], name: str, force: bool = False,
             combine: str = "mean") -> str:
    """Combine the experiments' stored probabilities into experiment `name` (lib/blend.py: `combine`), then
    tune it; each step only when what it is made from changed (a member predicted again), or `force`."""
    exps = [work.experiment(n) for n in names]
    for exp in exps:
        if not exp.config_yaml.exists():
            raise PipelineError(f"experiment '{exp.root.name}' has no {exp.config_yaml}; train and predict it first")
    configs = [load_config(e.config_yaml, encoder=False) for e in exps]
    splits = sorted({(c.data.n_folds, c.data.split) for c in configs})
    if len(splits) > 1:  # their out-of-fold files cover different images per fold
        raise PipelineError(f"experiments {', '.join(names)} were trained on different splits "
                            f"({', '.join(f'{k} folds by {kind}' for k, kind in splits)}: data.n_folds, data.split); "
                            "only experiments on one split can be averaged")
    work = replace(work, n_folds=splits[0][0], split=splits[0][1])
    target = work.experiment(name)
    stage = Stage("ensemble", target.predict_json, ensemble_identity(exps, combine))
    if stage.begin(force):
        weights = combine_into(target, exps, layout, work, combine)
        stage.finish(**({"weights": weights} if weights else {}))
    run_tune(name, configs[0].tune, layout, work, force=force)
    return name


def combine_into(target, exps, layout: InputLayout, work: WorkLayout, combine: str) -> dict | None:
    """The members' test and out-of-fold probabilities combined, fold by fold, into `target`: averaged, or
    (`weighted`) with weights tuned on the other folds' out-of-fold images; returns those weights."""
    train = load_train(layout, work)
    split = read_folds(work, train.ids)
    fold_ids = {int(f): split.loc[split["fold"] == f, "id"].tolist() for f in sorted(split["fold"].unique())}
    oof = {fold: [load_probs(e.oof_probs(fold)) for e in exps] for fold in fold_ids}
    weights = None
    if combine == "weighted":
        rows = pd.Index(train.ids)
        weights = tuned_weights(oof, fold_ids, {f: train.masks[rows.get_indexer(ids)] for f, ids in fold_ids.items()})
        print("ensemble weights (" + ", ".join(e.root.name for e in exps) + "): " + "; ".join(
            f"{'fold ' if held != 'test' else ''}{held} {w}" for held, w in weights.items()))
    pick = (lambda held: None) if weights is None else weights.get  # noqa: E731 (None: equal weights)
    save_probs(target.test_probs, combined([load_probs(e.test_probs) for e in exps], sample_ids(layout), pick("test")))
    for fold, ids in fold_ids.items():
        save_probs(target.oof_probs(fold), combined(oof[fold], ids, pick(fold)))
    return None if weights is None else {str(held): list(w) for held, w in weights.items()}


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="the experiment's YAML (with its overrides, it names the experiment)")
    which.add_argument("--experiments", help="an experiment's name, or comma-separated names to ensemble")
    p.add_argument("--threshold", type=float, default=None, help="override the tuned threshold")
    p.add_argument("--min-area", type=int, default=None, help="override the tuned minimum area")
    p.add_argument("--force", action="store_true", help="write the CSV again even when it is up to date")
    p.add_argument("--kaggle-message", default=None, metavar="TEXT", help="submit to Kaggle with this message")
    p.add_argument("overrides", nargs="*", help="the config overrides the experiment was trained with")
    args = p.parse_args(argv)
    api = kaggle_api.client() if args.kaggle_message is not None else None  # what submitting needs, first
    layout, work = cli.layouts(args)
    names = [n for n in (args.experiments or "").split(",") if n]
    if args.config and is_ensemble(args.config):
        members = load_ensemble(args.config)
        name = ensemble(layout, work, members.member_names(), members.name, args.force, members.combine)
    elif args.config:
        config = load_config(args.config, args.overrides, encoder=False)
        split = replace(work, n_folds=config.data.n_folds, split=config.data.split)
        FoldInputs.load(layout, split).require_trained(config)  # a changed config never submits the old models
        name = config.name
    else:
        name = names[0] if len(names) == 1 else ensemble(layout, work, names, "+".join(names), args.force)
    decision = stored_decision(work.experiment(name))
    if args.threshold is not None or args.min_area is not None:
        decision = replace(decision, threshold=args.threshold if args.threshold is not None else decision.threshold,
                           min_area=args.min_area if args.min_area is not None else decision.min_area)
    csv = submit(layout, work, name, decision, args.force)
    if api is not None:
        send(api, work.experiment(name), csv, decision, args.kaggle_message)


def send(api, exp, csv: Path, decision: Decision, text: str) -> None:
    """Submit the CSV to the competition; recorded beside the experiment once Kaggle confirms it."""
    cv = read_json(exp.tune_json).get("cv_score") if exp.tune_json.is_file() else None
    message = kaggle_api.message(exp.root.name, cv, decision, text)
    confirmed = kaggle_api.submit_csv(api, csv, message)
    kaggle_api.record(exp, csv, message, cv, decision, confirmed)
    print(f"submitted {csv} to Kaggle as submission {confirmed['ref']}: {message} ({confirmed['answer']})")


if __name__ == "__main__":
    cli.run_stage(main)
