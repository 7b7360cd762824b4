"""Choosing the decision (threshold, minimum area, image-head cut) on out-of-fold predictions, and
writing what the tune stage leaves: tune.json (the decision and the CV score), threshold_curve.png and
val_overlays.png."""
from __future__ import annotations

import itertools

import numpy as np

from . import plots
from .data import load_train
from .errors import PipelineError
from .folds import read_folds
from .metric import grid_counts, image_scores, mean_score, scores_from_counts
from .paths import ExperimentLayout, WorkLayout
from .postprocess import Decision, emptied, masks_from_probs
from .records import record_digest, say, state
from .store import Probs, load_probs, write_json


def threshold_grid(section) -> np.ndarray:
    t = section.thresholds
    return np.round(np.linspace(t.start, t.stop, t.num), 4)


def untuned(probs: Probs) -> Decision:
    """Threshold 0.5 and, with an image head, its natural cut (P(salt) < 0.5 -> empty)."""
    return Decision(0.5, 0, None if probs.salt_prob is None else 0.5)


def search(probs: Probs, truth: np.ndarray, section) -> tuple[Decision, float, dict]:
    """Best decision over thresholds x min areas x head cuts (`section`: the config's tune section), and
    two mAP-vs-threshold curves: 'plain' (no post-processing) and 'chosen' (the best min area and head cut)."""
    thresholds = threshold_grid(section)
    inter, pred_area, truth_area = grid_counts(probs.levels, truth, thresholds)

    def curve(rule: Decision) -> np.ndarray:
        gone = emptied(pred_area, probs.salt_prob, rule)
        return scores_from_counts(np.where(gone, 0, inter), np.where(gone, 0, pred_area),
                                  truth_area[:, None]).mean(0)

    cuts = section.empty_cuts if probs.salt_prob is not None else [None]
    best, best_score, best_curve = Decision(), -1.0, None
    for min_area, cut in itertools.product(section.min_areas, cuts):
        scores = curve(Decision(0.5, int(min_area), cut))
        k = int(np.argmax(scores))
        if scores[k] > best_score + 1e-12:
            best, best_score, best_curve = Decision(float(thresholds[k]), int(min_area), cut), float(scores[k]), scores
    return best, best_score, {"plain": curve(Decision(0.5, 0, None)), "chosen": best_curve}


def oof_probs(exp: ExperimentLayout, folds: list[int]) -> Probs:
    return Probs.concat([load_probs(exp.oof_probs(fold)) for fold in folds])


def tune(probs: Probs, truth: np.ndarray, images: np.ndarray, split: np.ndarray, section,
         exp: ExperimentLayout, identity: dict | None = None) -> dict:
    """Search, then write the pictures and, last, tune.json; `probs` rows align with the other arrays."""
    decision, cv, curves = search(probs, truth, section)
    masks = masks_from_probs(probs, decision)
    per_image = image_scores(truth, masks)
    at_05 = mean_score(truth, masks_from_probs(probs, untuned(probs)))
    result = {"decision": decision.to_dict(), "cv_score": round(cv, 5), "cv_score_at_0.5": round(float(at_05), 5),
              "fold_scores": {int(f): round(float(per_image[split == f].mean()), 5) for f in np.unique(split)},
              "images": int(len(truth)), "identity": identity or {}}
    plots.threshold_curve(threshold_grid(section), curves, decision, exp.threshold_png,
                          f"{exp.root.name}: out-of-fold mAP vs threshold")
    pick = np.random.default_rng(0).choice(len(truth), min(32, len(truth)), replace=False)
    plots.overlays(images[pick], masks[pick], exp.val_overlay_png,
                   f"{exp.root.name}: validation", truths=truth[pick],
                   captions=[f"{probs.ids[i]} {per_image[i]:.2f}" for i in pick])
    write_json(exp.tune_json, result)  # last: a tune.json on disk means the stage finished
    return result


def tune_identity(exp: ExperimentLayout, section) -> dict:
    return {"predictions": record_digest(exp.predict_json), "config": {"tune": section.model_dump(mode="json")}}


def run_tune(name: str, section, layout, work: WorkLayout, force: bool = False) -> dict | None:
    """Tune experiment `name` on its stored out-of-fold probabilities (`section`: the config's tune section);
    None when tune.json is up to date for them and this section."""
    exp = work.experiment(name)
    identity = tune_identity(exp, section)
    status = state(exp.tune_json, identity)
    say("tune", status)
    if status[0] == "up to date" and not force:
        return None
    if not exp.predict_json.exists():
        raise PipelineError(f"{exp.predict_json} is missing; run `python -m pipeline.predict` for '{name}' first")
    train = load_train(layout, work)
    split = read_folds(work, train.ids)["fold"].to_numpy()
    probs = oof_probs(exp, sorted(set(split))).subset(train.ids)
    result = tune(probs, train.masks, train.images, split, section, exp, identity)
    d = result["decision"]
    print(f"CV mAP {result['cv_score']:.4f} (at 0.5, untuned: {result['cv_score_at_0.5']:.4f}) with threshold "
          f"{d['threshold']}, min area {d['min_area']}, empty cut {d['empty_cut']}; wrote {exp.tune_json}")
    return result
