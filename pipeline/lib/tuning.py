"""Choosing the decision (threshold, minimum area, image-head cut) on out-of-fold predictions, and
writing what the tune stage leaves: tune.json (the decision, the CV score, and where it is lost: per
coverage class, per fold, per error kind), oof_scores.csv (one row per image), threshold_curve.png,
val_overlays.png (the worst images by error kind) and coverage_scores.png."""
from __future__ import annotations

import itertools

import numpy as np

from . import analysis, plots
from .data import load_train
from .errors import PipelineError
from .folds import read_folds
from .metric import grid_counts, mean_score, scores_from_counts
from .paths import ExperimentLayout, WorkLayout
from .postprocess import Decision, emptied, masks_from_probs
from .records import Stage, tune_stage
from .store import Probs, load_probs, write_text


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
         exp: ExperimentLayout, stage: Stage | None = None) -> dict:
    """Search, then write the per-image scores, the pictures and, last, tune.json; `probs` rows align with
    the other arrays. `stage`: the tune stage whose record this is (none: a bare tune.json, for tests)."""
    decision, cv, curves = search(probs, truth, section)
    masks = masks_from_probs(probs, decision)
    frame = analysis.per_image(probs.ids, split, truth, masks, probs.salt_prob)
    at_05 = mean_score(truth, masks_from_probs(probs, untuned(probs)))
    result = {"decision": decision.to_dict(), "cv_score": round(cv, 5), "cv_score_at_0.5": round(float(at_05), 5),
              "fold_scores": {int(f): round(float(frame["score"][split == f].mean()), 5) for f in np.unique(split)},
              "images": int(len(truth)), "analysis": analysis.summary(frame)}
    plots.threshold_curve(threshold_grid(section), curves, decision, exp.threshold_png,
                          f"{exp.root.name}: out-of-fold mAP vs threshold")
    pictures(exp, frame, images, truth, probs, masks, result["analysis"])
    write_text(exp.oof_scores_csv, frame.to_csv(index=False))
    (stage or Stage("tune", exp.tune_json, {})).finish(**result)  # last: a tune.json means the stage finished
    return result


def pictures(exp: ExperimentLayout, frame, images, truth, probs: Probs, masks, summary: dict) -> None:
    """The worst out-of-fold images by error kind, and the score per coverage class."""
    head = probs.salt_prob
    captions = [f"{i} {s:.2f}" + ("" if head is None else f" P={p:.2f}")
                for i, s, p in zip(frame["id"], frame["score"], head if head is not None else frame["score"])]
    plots.error_overlays(images, truth, probs.levels, masks, analysis.worst(frame),
                         captions, exp.val_overlay_png, f"{exp.root.name}: worst out-of-fold images by error kind")
    plots.coverage_bars(summary["by_coverage_class"], exp.coverage_png, f"{exp.root.name}: where the CV is lost")


def run_tune(name: str, section, layout, work: WorkLayout, force: bool = False) -> dict | None:
    """Tune experiment `name` on its stored out-of-fold probabilities (`section`: the config's tune section);
    None when tune.json is up to date for them and this section."""
    exp = work.experiment(name)
    stage = tune_stage(exp, section)
    if not stage.begin(force):
        return None
    if not exp.predict_json.exists():
        raise PipelineError(f"{exp.predict_json} is missing; run `python -m pipeline.predict` for '{name}' first")
    train = load_train(layout, work)
    split = read_folds(work, train.ids)["fold"].to_numpy()
    probs = oof_probs(exp, sorted(set(split))).subset(train.ids)
    result = tune(probs, train.masks, train.images, split, section, exp, stage)
    d = result["decision"]
    print(f"CV mAP {result['cv_score']:.4f} (at 0.5, untuned: {result['cv_score_at_0.5']:.4f}) with threshold "
          f"{d['threshold']}, min area {d['min_area']}, empty cut {d['empty_cut']}; wrote {exp.tune_json}")
    print("\n".join(analysis.report_lines(result["analysis"])))
    return result
