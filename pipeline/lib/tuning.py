"""Choosing the decision (threshold, minimum area, image-head cut) on out-of-fold predictions, and
writing what the tune stage leaves: tune.json (the decision, the CV score, and where it is lost: per
coverage class, per fold, per error kind), oof_scores.csv (one row per image), threshold_curve.png,
val_overlays.png (the worst images by error kind) and coverage_scores.png."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from . import analysis, plots
from .errors import PipelineError
from .fold_data import FoldInputs
from .metric import grid_counts, image_scores, mean_score, scores_from_counts
from .mosaic import Mosaics, read_mosaics
from .neighbours import RULES, Neighbourhood, apply, neighbourhood
from .paths import ExperimentLayout, WorkLayout
from .postprocess import Decision, emptied, masks_from_probs
from .probs import Probs, load_probs
from .records import Stage, mosaic_made_from, tune_stage
from .store import write_text

MIN_GAIN = 1e-4  # a neighbour rule is kept when it raises the out-of-fold mAP by more than this


def threshold_grid(section) -> np.ndarray:
    t = section.thresholds
    return np.round(np.linspace(t.start, t.stop, t.num), 4)


def untuned(probs: Probs) -> Decision:
    """Threshold 0.5 and, with an image head, its natural cut (P(salt) < 0.5 -> empty)."""
    return Decision(0.5, 0, None if probs.salt_prob is None else 0.5)


def search(probs: Probs, truth: np.ndarray, section) -> tuple[Decision, float, dict]:
    """Best decision over thresholds x min areas x head cuts (`section`: the config's tune section), then the
    head cut overruled for near-full masks (`full_keeps`), kept only above noise (`full_keep_trial`); and what
    it saw: two mAP-vs-threshold curves, 'plain' (no post-processing) and 'chosen', and the full-keep trial."""
    thresholds = threshold_grid(section)
    inter, pred_area, truth_area = grid_counts(probs.levels, truth, thresholds)
    pixels = int(np.prod(probs.levels.shape[1:]))

    def curve(rule: Decision) -> np.ndarray:
        gone = emptied(pred_area, probs.salt_prob, rule, pixels)
        return scores_from_counts(np.where(gone, 0, inter), np.where(gone, 0, pred_area),
                                  truth_area[:, None]).mean(0)

    cuts = section.empty_cuts if probs.salt_prob is not None else [None]
    best, score, chosen = best_of(curve, thresholds, itertools.product(section.min_areas, cuts, [None]))
    seen = {"plain": curve(Decision(0.5, 0, None)), "chosen": chosen}
    keeps, head_cuts = [k for k in section.full_keeps if k is not None], [c for c in cuts if c is not None]
    if keeps and head_cuts:
        grid = itertools.product(section.min_areas, head_cuts, keeps)
        full, full_score, full_curve = best_of(curve, thresholds, grid)
        seen["full_keep"] = full_keep_trial(probs, truth, best, full, full_score - score, section.rules_min_images)
        if seen["full_keep"]["kept"]:
            best, score, seen["chosen"] = full, full_score, full_curve
    return best, score, seen


def best_of(curve, thresholds: np.ndarray, grid) -> tuple[Decision, float, np.ndarray]:
    """The best decision over `grid` (min area, head cut, full keep) x thresholds, its score and its curve."""
    best, best_score, best_curve = Decision(), -1.0, None
    for min_area, cut, keep in grid:
        scores = curve(Decision(0.5, int(min_area), cut, full_keep=keep))
        k = int(np.argmax(scores))
        if scores[k] > best_score + 1e-12:
            best = Decision(float(thresholds[k]), int(min_area), cut, full_keep=keep)
            best_score, best_curve = float(scores[k]), scores
    return best, best_score, best_curve


def full_keep_trial(probs: Probs, truth, without: Decision, full: Decision, gain: float, min_images: int) -> dict:
    """Whether near-full masks overruling the head's cut (`full`) beat the decision `without` it above noise:
    by more than MIN_GAIN, on at least `min_images` changed images (as a neighbour rule must)."""
    changed = int((masks_from_probs(probs, full) != masks_from_probs(probs, without)).reshape(len(truth), -1)
                  .any(1).sum())
    return {"decision": full.to_dict(), "gain": round(gain, 5), "images": changed,
            "kept": bool(gain > MIN_GAIN and changed >= min_images)}


def full_keep_by_fold(probs: Probs, truth, split, decision: Decision, trial: dict) -> dict:
    """The full-keep trial with its gain per fold (the fold means of the per-image score differences)."""
    full = Decision.from_dict(trial["decision"])
    without = replace(decision, full_keep=None)
    diff = image_scores(truth, masks_from_probs(probs, full)) - image_scores(truth, masks_from_probs(probs, without))
    return {**trial, "fold_gains": {int(f): round(float(diff[split == f].mean()), 5) for f in np.unique(split)}}


def fold_neighbourhood(mosaics: Mosaics, ids, truth, masks, held: np.ndarray, test_masks: dict) -> Neighbourhood:
    """What the rules may see when deciding the `held` images (one fold): the true masks of the other folds'
    images, the predictions of the held ones and of the test tiles; never the held images' truth."""
    known = {i: t for i, t, h in zip(ids, truth, held) if not h}
    predicted = {i: m for i, m, h in zip(ids, masks, held) if h}
    return neighbourhood(mosaics, known, {**test_masks, **predicted})


def with_rules(neighbourhoods: dict, rules, ids, masks, split) -> np.ndarray:
    """Each fold's masks after `rules`, decided with what that fold's neighbourhood shows."""
    out = masks.copy()
    for fold, nb in neighbourhoods.items():
        rows = np.flatnonzero(split == fold)
        out[rows] = apply(nb, rules)[nb.index[np.asarray(ids)[rows]].to_numpy()]
    return out


def choose_rules(neighbourhoods: dict, candidates, ids, truth, masks, split,
                 min_images: int = 1) -> tuple[list, dict, np.ndarray]:
    """(kept rules; per candidate, its out-of-fold mAP gain on top of those kept before it and how many
    images it changed; the masks under the kept rules). Candidates are tried in the registry's order and kept
    when they gain over MIN_GAIN on at least `min_images` changed images (fewer are no evidence)."""
    kept, trials, best, current = [], {}, mean_score(truth, masks), masks
    for rule in (name for name in RULES if name in set(candidates)):
        trial = with_rules(neighbourhoods, kept + [rule], ids, masks, split)
        score = mean_score(truth, trial)
        changed = int((trial != current).reshape(len(trial), -1).any(1).sum())
        trials[rule] = {"gain": round(score - best, 5), "images": changed}
        if score > best + MIN_GAIN and changed >= min_images:
            kept, best, current = kept + [rule], score, trial
    return kept, trials, current


@dataclass(frozen=True)
class RuleContext:
    """What tuning the neighbour rules needs besides the out-of-fold set: the mosaics, the test predictions
    (their masks are neighbours' predictions too) and the candidate rules (the config's tune.neighbour_rules)."""

    mosaics: Mosaics
    test_probs: Probs | None
    candidates: tuple[str, ...]
    min_images: int = 1  # the config's tune.rules_min_images


def neighbour_rules(probs: Probs, truth, split, decision: Decision, masks,
                    context: RuleContext | None) -> tuple[Decision, dict, np.ndarray]:
    """The decision with the rules that raise the out-of-fold mAP, what each gained, and the masks under
    them; the decision as it is without a context (no mosaic, or no candidates)."""
    if context is None or not context.candidates:
        return decision, {}, masks
    test = context.test_probs
    test_masks = {} if test is None else dict(zip(test.ids, masks_from_probs(test, decision)))
    neighbourhoods = {int(f): fold_neighbourhood(context.mosaics, probs.ids, truth, masks, split == f, test_masks)
                      for f in np.unique(split)}
    kept, trials, masks = choose_rules(neighbourhoods, context.candidates, probs.ids, truth, masks, split,
                                       context.min_images)
    return replace(decision, rules=tuple(kept)), trials, masks


def rule_context(work: WorkLayout, exp: ExperimentLayout, train, section) -> RuleContext | None:
    """The context for tuning the rules (`section`: the config's tune section); None (and a line saying so)
    when there is no mosaic yet."""
    if not section.neighbour_rules:
        return None
    if not work.mosaic_json.exists():
        print(f"neighbour rules: not tried ({work.mosaic_csv} is missing: run `python -m pipeline.mosaic`)")
        return None
    mosaic_made_from(work, train.digest)
    test = load_probs(exp.test_probs) if exp.test_probs.exists() else None
    needed = list(train.ids) + ([] if test is None else list(test.ids))
    return RuleContext(read_mosaics(work.mosaic_csv, needed), test, tuple(section.neighbour_rules),
                       section.rules_min_images)


def oof_probs(exp: ExperimentLayout, folds: list[int]) -> Probs:
    return Probs.concat([load_probs(exp.oof_probs(fold)) for fold in folds])


def tune(probs: Probs, truth: np.ndarray, images: np.ndarray, split: np.ndarray, section,
         exp: ExperimentLayout, stage: Stage | None = None, context: RuleContext | None = None) -> dict:
    """Search, then the neighbour rules (with a `context`), then write the per-image scores, the pictures and,
    last, tune.json; `probs` rows align with the other arrays. `stage`: the tune stage whose record this is
    (none: a bare tune.json, for tests)."""
    decision, cv, seen = search(probs, truth, section)
    full = seen.get("full_keep")
    decision, trials, masks = neighbour_rules(probs, truth, split, decision, masks_from_probs(probs, decision), context)
    frame = analysis.per_image(probs.ids, split, truth, masks, probs.salt_prob)
    at_05 = mean_score(truth, masks_from_probs(probs, untuned(probs)))
    result = {"decision": decision.to_dict(), "cv_score": round(float(frame["score"].mean()), 5),
              "cv_score_at_0.5": round(float(at_05), 5),
              "fold_scores": {int(f): round(float(frame["score"][split == f].mean()), 5) for f in np.unique(split)},
              "images": int(len(truth)), "analysis": analysis.summary(frame)}
    if trials:
        result.update(cv_score_without_rules=round(cv, 5), neighbour_rules=trials)
    if full:
        result["full_keep"] = full_keep_by_fold(probs, truth, split, replace(decision, rules=()), full)
    plots.threshold_curve(threshold_grid(section), seen, decision, exp.threshold_png,
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


def rules_line(result: dict) -> str:
    kept = set(result["decision"].get("rules", []))
    said = [f"{rule} {t['gain']:+.4f} on {t['images']} images" + (" (kept)" if rule in kept else "")
            for rule, t in result["neighbour_rules"].items()]
    return (f"neighbour rules: {', '.join(said)}; CV {result['cv_score_without_rules']:.4f} without them, "
            f"{result['cv_score']:.4f} with {', '.join(sorted(kept, key=list(RULES).index)) or 'none'}")


def full_keep_line(trial: dict) -> str:
    folds = ", ".join(f"{gain:+.4f}" for gain in trial["fold_gains"].values())
    return (f"near-full masks kept against the head (full_keep {trial['decision']['full_keep']}): "
            f"{trial['gain']:+.4f} on {trial['images']} images ({'kept' if trial['kept'] else 'not kept'}; "
            f"per fold {folds})")


def run_tune(name: str, section, layout, work: WorkLayout, force: bool = False) -> dict | None:
    """Tune experiment `name` on its stored out-of-fold probabilities (`section`: the config's tune section);
    None when tune.json is up to date for them and this section."""
    exp = work.experiment(name)
    stage = tune_stage(exp, section, work.mosaic_json)
    if not stage.begin(force):
        return None
    if not exp.predict_json.exists():
        raise PipelineError(f"{exp.predict_json} is missing; run `python -m pipeline.predict` for '{name}' first")
    inputs = FoldInputs.load(layout, work)
    train, split = inputs.train, inputs.split
    probs = oof_probs(exp, inputs.folds).subset(train.ids)
    context = rule_context(work, exp, train, section)
    result = tune(probs, train.masks, train.images, split, section, exp, stage, context)
    print(f"CV mAP {result['cv_score']:.4f} (at 0.5, untuned: {result['cv_score_at_0.5']:.4f}) with "
          f"{Decision.from_dict(result['decision']).describe()}; wrote {exp.tune_json}")
    if "neighbour_rules" in result:
        print(rules_line(result))
    if "full_keep" in result:
        print(full_keep_line(result["full_keep"]))
    print("\n".join(analysis.report_lines(result["analysis"])))
    return result
