"""Stage: write the Kaggle submission CSV from stored test probabilities.

    python -m pipeline.submit --config pipeline/configs/default.yaml [--threshold T] [--min-area A]
    python -m pipeline.submit --experiments a,b[,...]      # ensemble: average, tune, submit

Reads experiments/<name>/test_probs.npz and the tuned decision (experiments/<name>/tune.json, when
the tune stage has run; 0.5 otherwise); flags override it. Writes submissions/<name>.csv with
exactly sample_submission.csv's ids, in its order, and test_overlays.png beside the experiment.
An ensemble averages the experiments' test and out-of-fold probabilities into experiments/a+b/,
tunes on the averaged out-of-fold set, and writes submissions/a+b.csv.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .lib import cli, plots, rle
from .lib.config import load_config
from .lib.data import load_test, load_train, read_csv
from .lib.errors import PipelineError, run_stage
from .lib.folds import read_folds
from .lib.paths import InputLayout, WorkLayout
from .lib.postprocess import Decision, masks_from_probs, stored_decision
from .lib.store import Probs, atomic_path, from_levels, load_probs, save_probs, to_levels
from .lib.tuning import run_tune


def sample_ids(layout: InputLayout) -> list[str]:
    if not layout.root.is_dir():
        raise PipelineError(f"input folder {layout.root} does not exist; pass --input DIR or set TGS_INPUT")
    return list(read_csv(layout.sample_submission_csv, ["id", "rle_mask"])["id"])


def check_ids(probs: Probs, ids: list[str], source: Path) -> Probs:
    """The stored test probabilities, in sample_submission's order; they must cover exactly its ids."""
    extra = set(probs.ids).difference(ids)
    if extra:
        raise PipelineError(f"{source} holds {len(extra)} id(s) not in sample_submission.csv "
                            f"(first: {sorted(extra)[0]}); it was predicted for other data, rerun predict")
    return probs.subset(ids)


def write_submission(path: Path, ids: list[str], masks: np.ndarray) -> None:
    frame = pd.DataFrame({"id": ids, "rle_mask": rle.encode_many(masks)})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def submit(layout: InputLayout, work: WorkLayout, name: str, decision: Decision) -> Path:
    path = work.experiment(name).test_probs
    probs = check_ids(load_probs(path), sample_ids(layout), path)
    out = work.submission_csv(name)
    masks = masks_from_probs(probs, decision)
    write_submission(out, list(probs.ids), masks)
    images = load_test(layout, work).images
    pick = np.random.default_rng(0).choice(len(masks), min(32, len(masks)), replace=False)
    plots.overlays(images[pick], masks[pick], work.experiment(name).test_overlay_png, f"{name}: test",
                   captions=[str(probs.ids[i]) for i in pick])
    print(f"wrote {out}: {len(masks)} images, {(masks.reshape(len(masks), -1).any(1)).mean():.1%} with salt, "
          f"threshold {decision.threshold:.3f}, min area {decision.min_area}")
    return out


def average(probs: list[Probs], ids) -> Probs:
    parts = [p.subset(ids) for p in probs]
    heads = [p.salt_prob for p in parts]
    head = None if any(h is None for h in heads) else np.mean(heads, axis=0)
    return Probs(np.asarray(ids), to_levels(np.mean([from_levels(p.levels) for p in parts], axis=0)), head)


def ensemble(layout: InputLayout, work: WorkLayout, names: list[str]) -> str:
    """Average the experiments' stored probabilities into a new experiment, then tune it."""
    exps = [work.experiment(n) for n in names]
    for exp in exps:
        if not exp.config_yaml.exists():
            raise PipelineError(f"experiment '{exp.root.name}' has no {exp.config_yaml}; train and predict it first")
    name = "+".join(names)
    target = work.experiment(name)
    ids = sample_ids(layout)
    save_probs(target.test_probs, average([load_probs(e.test_probs) for e in exps], ids))
    train_ids = load_train(layout, work).ids
    split = read_folds(work, train_ids)
    for fold in sorted(split["fold"].unique()):
        fold_ids = split.loc[split["fold"] == fold, "id"].tolist()
        save_probs(target.oof_probs(fold), average([load_probs(e.oof_probs(fold)) for e in exps], fold_ids))
    run_tune(name, load_config(exps[0].config_yaml).tune, layout, work)
    return name


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="the experiment's YAML (its file stem names it)")
    which.add_argument("--experiments", help="comma-separated experiment names to ensemble")
    p.add_argument("--threshold", type=float, default=None, help="override the tuned threshold")
    p.add_argument("--min-area", type=int, default=None, help="override the tuned minimum area")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args)
    names = [n for n in (args.experiments or "").split(",") if n]
    name = Path(args.config).stem if args.config else names[0] if len(names) == 1 else ensemble(layout, work, names)
    decision = stored_decision(work.experiment(name))
    if args.threshold is not None or args.min_area is not None:
        decision = Decision(args.threshold if args.threshold is not None else decision.threshold,
                            args.min_area if args.min_area is not None else decision.min_area,
                            decision.empty_cut)
    submit(layout, work, name, decision)


if __name__ == "__main__":
    run_stage(main)
