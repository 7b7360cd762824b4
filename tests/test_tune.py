import numpy as np
import pandas as pd

from pipeline.lib import analysis
from pipeline.lib.config import TuneConfig
from pipeline.lib.paths import WorkLayout
from pipeline.lib.probs import Probs, to_levels
from pipeline.lib.tuning import search, tune

SECTION = TuneConfig(thresholds={"start": 0.2, "stop": 0.8, "num": 61}, min_areas=[0, 30], empty_cuts=[None, 0.5])


def synthetic(n=60, seed=0):
    """Salt pixels at p=0.7, a ring of background around each body at p=0.55, the rest at 0.3,
    so exactly the thresholds in [0.55, 0.70) give perfect masks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:101, 0:101]
    truth, probs = np.zeros((n, 101, 101), bool), np.full((n, 101, 101), 0.3)
    for i in range(n):
        if i % 3 == 0:
            continue  # empty image
        cy, cx, r = rng.integers(30, 70, 2).tolist() + [rng.integers(8, 25)]
        d = np.hypot(y - cy, x - cx)
        truth[i] = d < r
        probs[i][(d >= r) & (d < r + 4)] = 0.55
        probs[i][truth[i]] = 0.7
    return truth, probs


def test_tune_recovers_the_known_best_threshold():
    truth, probs = synthetic()
    decision, score, curves = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs)), truth, SECTION)
    assert 0.55 <= decision.threshold < 0.7
    assert score == 1.0 and decision.min_area == 0
    assert curves["plain"].min() < 0.9  # thresholds outside the band are clearly worse
    assert curves["plain"].max() == curves["chosen"].max() == 1.0


def test_min_area_removes_specks():
    truth, probs = synthetic()
    probs[0, :2, :2] = 0.9  # a 4-pixel false positive in an empty image
    decision, score, curves = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs)), truth, SECTION)
    assert decision.min_area == 30 and score == 1.0
    assert curves["plain"].max() < 1.0 and curves["chosen"].max() == 1.0


def test_the_curves_exist_when_the_grid_has_no_zero_min_area():
    truth, probs = synthetic()
    section = SECTION.model_copy(update={"min_areas": [30, 60]})
    decision, _, curves = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs)), truth, section)
    assert decision.min_area in (30, 60) and curves["plain"].shape == curves["chosen"].shape == (61,)


def test_empty_head_cut_is_tuned_when_the_head_exists():
    truth, probs = synthetic()
    probs[0, 40:60, 40:60] = 0.9  # a large false positive the head knows is wrong
    head = truth.reshape(len(truth), -1).any(1).astype(np.float32) * 0.8 + 0.1
    decision, score, _ = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs), head), truth, SECTION)
    assert decision.empty_cut == 0.5 and score == 1.0


def test_per_image_scores_name_each_error_kind_and_add_up_to_the_cv():
    truth = np.zeros((5, 101, 101), bool)
    truth[1:4, 20:60, 20:60] = True
    pred = truth.copy()
    pred[0, :5, :5] = True  # salt on an empty image
    pred[2] = False  # salt missed
    pred[3, 20:40] = False  # half the body: partial
    frame = analysis.per_image(list("abcde"), [0, 0, 1, 1, 1], truth, pred, None)
    assert frame["error"].tolist() == ["false_salt", "exact", "missed_salt", "partial", "empty"]
    assert frame["true_area"].tolist()[:2] == [0, 1600] and frame["coverage_class"].tolist()[:2] == [0, 2]
    summary = analysis.summary(frame)
    lost = {kind: e["points"] for kind, e in summary["errors"].items()}
    assert lost["false_salt"] == lost["missed_salt"] == 0.2 and lost["empty"] == lost["exact"] == 0.0
    assert abs(sum(lost.values()) - (1 - frame["score"].mean())) < 1e-6
    assert abs(sum(c["points"] for c in summary["by_coverage_class"].values()) - (1 - frame["score"].mean())) < 1e-6
    assert set(summary["by_coverage_class"]) == {"empty", "10-20%"} and set(summary["by_fold"]) == {"0", "1"}
    assert [kind for kind, _ in analysis.worst(frame)] == ["false_salt", "missed_salt", "partial"]


def test_tune_writes_the_per_image_table_and_its_pictures(tmp_path):
    truth, probs = synthetic(n=30)
    probs[0, 40:60, 40:60] = 0.9  # one false positive
    stored = Probs(np.arange(len(truth)).astype(str), to_levels(probs))
    exp = WorkLayout(tmp_path).experiment("x")
    split = np.arange(len(truth)) % 3
    result = tune(stored, truth, (probs * 255).astype(np.uint8), split, SECTION, exp)
    frame = pd.read_csv(exp.oof_scores_csv, dtype={"id": str})
    assert list(frame.columns) == analysis.COLUMNS and len(frame) == 30
    assert abs(frame["score"].mean() - result["cv_score"]) < 1e-5
    assert result["analysis"]["errors"]["false_salt"]["images"] == (frame["error"] == "false_salt").sum()
    for png in (exp.val_overlay_png, exp.coverage_png, exp.threshold_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def full_salt_case(n_full: int):
    """The synthetic set plus `n_full` fully salted tiles whose mask map is confident while the image head says
    "no salt" (as it does on texture-less salt), and false salt on empty images that the head's cut must empty."""
    truth, probs = synthetic()
    head = truth.reshape(len(truth), -1).any(1).astype(np.float32) * 0.8 + 0.1
    for i in range(0, 60, 3):  # every empty image has a large false body: only the head's cut empties them
        probs[i, 30:70, 30:70] = 0.9
    full = np.ones((n_full, 101, 101), bool)
    return (np.concatenate([truth, full]), np.concatenate([probs, np.full((n_full, 101, 101), 0.9)]),
            np.concatenate([head, np.full(n_full, 0.2, np.float32)]))


def test_near_full_masks_overrule_the_head_only_above_noise():
    section = SECTION.model_copy(update={"full_keeps": [None, 0.5, 0.9], "rules_min_images": 5})
    truth, probs, head = full_salt_case(12)
    decision, score, seen = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs), head), truth, section)
    assert decision.empty_cut == 0.5 and decision.full_keep in (0.5, 0.9) and score == 1.0
    assert seen["full_keep"]["kept"] and seen["full_keep"]["images"] == 12
    truth, probs, head = full_salt_case(3)  # three images are no evidence: the rule is tried, not kept
    decision, score, seen = search(Probs(np.arange(len(truth)).astype(str), to_levels(probs), head), truth, section)
    assert decision.full_keep is None and not seen["full_keep"]["kept"] and seen["full_keep"]["gain"] > 0


def test_a_decision_reads_back_and_says_itself():
    from pipeline.lib.postprocess import Decision
    full = Decision(0.45, 40, 0.6, ("carry_down",), 0.9)
    assert Decision.from_dict(full.to_dict()) == full
    assert "full_keep" not in Decision(0.5).to_dict() and "rules" not in Decision(0.5).to_dict()
    assert full.describe() == ("threshold 0.450, min area 40, head cut 0.60 unless the mask covers 90%, "
                               "neighbour rules carry_down")
