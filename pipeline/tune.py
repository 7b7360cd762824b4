"""Stage: choose the threshold (and minimum area, and empty-head cut) on out-of-fold predictions.

    python -m pipeline.tune --config pipeline/configs/default.yaml [--input DIR]

Reads every fold's oof_probs.npz (no GPU needed, so tuning reruns in seconds), scores the whole grid
at once, and writes experiments/<name>/tune.json (the decision and the CV score),
threshold_curve.png and val_overlays.png.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import cli, plots
from .config import load_config
from .data import load_train
from .errors import run_stage
from .folds import read_folds
from .metric import grid_counts, image_scores, mean_score, scores_from_counts
from .paths import ExperimentLayout, WorkLayout
from .postprocess import Decision, emptied, masks_from_probs
from .store import Probs, load_probs, write_json


def threshold_grid(section: dict) -> np.ndarray:
    t = section["thresholds"]
    return np.round(np.linspace(t["start"], t["stop"], int(t["num"])), 4)


def search(probs: Probs, truth: np.ndarray, section: dict) -> tuple[Decision, float, dict]:
    """Best decision over thresholds x min areas x head cuts, and two mAP-vs-threshold curves:
    'plain' (no post-processing) and 'chosen' (the best min area and head cut)."""
    thresholds = threshold_grid(section)
    inter, pred_area, truth_area = grid_counts(probs.levels, truth, thresholds)

    def curve(rule: Decision) -> np.ndarray:
        gone = emptied(pred_area, probs.empty_prob, rule)
        return scores_from_counts(np.where(gone, 0, inter), np.where(gone, 0, pred_area),
                                  truth_area[:, None]).mean(0)

    cuts = section["empty_cuts"] if probs.empty_prob is not None else [None]
    best, best_score, best_curve = Decision(), -1.0, None
    for min_area, cut in itertools.product(section["min_areas"], cuts):
        scores = curve(Decision(0.5, int(min_area), cut))
        k = int(np.argmax(scores))
        if scores[k] > best_score + 1e-12:
            best, best_score, best_curve = Decision(float(thresholds[k]), int(min_area), cut), float(scores[k]), scores
    return best, best_score, {"plain": curve(Decision(0.5, 0, None)), "chosen": best_curve}


def oof_probs(exp: ExperimentLayout, folds: list[int]) -> Probs:
    parts = [load_probs(exp.oof_probs(fold)) for fold in folds]
    heads = [p.empty_prob for p in parts]
    return Probs(np.concatenate([p.ids for p in parts]), np.concatenate([p.levels for p in parts]),
                 None if any(h is None for h in heads) else np.concatenate(heads))


def tune(probs: Probs, truth: np.ndarray, images: np.ndarray, split: np.ndarray, config: dict,
         exp: ExperimentLayout) -> dict:
    """Search, then write tune.json and the pictures; `probs` rows align with the other arrays."""
    section = config["tune"]
    decision, cv, curves = search(probs, truth, section)
    masks = masks_from_probs(probs, decision)
    per_image = image_scores(truth, masks)
    untuned = Decision(0.5, 0, None if probs.empty_prob is None else 0.5)  # the head's natural cut, if any
    at_05 = mean_score(truth, masks_from_probs(probs, untuned))
    result = {"decision": decision.to_dict(), "cv_score": round(cv, 5), "cv_score_at_0.5": round(float(at_05), 5),
              "fold_scores": {int(f): round(float(per_image[split == f].mean()), 5) for f in np.unique(split)},
              "images": int(len(truth))}
    write_json(exp.tune_json, result)
    plots.threshold_curve(threshold_grid(section), curves, decision, exp.threshold_png,
                          f"{exp.root.name}: out-of-fold mAP vs threshold")
    pick = np.random.default_rng(0).choice(len(truth), min(32, len(truth)), replace=False)
    plots.overlays(images[pick], masks[pick], exp.val_overlay_png,
                   f"{exp.root.name}: validation", truths=truth[pick],
                   captions=[f"{probs.ids[i]} {per_image[i]:.2f}" for i in pick])
    return result


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    layout, work = cli.layouts(args)
    run_tune(config, layout, work)


def run_tune(config: dict, layout, work: WorkLayout) -> dict:
    exp = work.experiment(config["name"])
    train = load_train(layout, work)
    split = read_folds(work, train.ids)["fold"].to_numpy()
    probs = oof_probs(exp, sorted(set(split))).subset(train.ids)
    result = tune(probs, train.masks, train.images, split, config, exp)
    d = result["decision"]
    print(f"CV mAP {result['cv_score']:.4f} (at 0.5, untuned: {result['cv_score_at_0.5']:.4f}) with threshold "
          f"{d['threshold']}, min area {d['min_area']}, empty cut {d['empty_cut']}; wrote {exp.tune_json}")
    return result


if __name__ == "__main__":
    run_stage(main)
