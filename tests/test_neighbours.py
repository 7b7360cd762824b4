"""Neighbour rules: what each does down a mosaic column, that none can read the truth of a tile it decides,
and that tune keeps the rules that pay and submit applies them."""
import numpy as np
import pandas as pd
import pytest

from pipeline.lib.errors import PipelineError
from pipeline.lib.mosaic import Mosaics
from pipeline.lib.neighbours import RULES, apply, check_rules, decide_test, neighbourhood
from pipeline.lib.probs import Probs, to_levels
from pipeline.lib.tuning import RuleContext, choose_rules, fold_neighbourhood, tune
from tests.test_tune import SECTION

S = 101


def column(n: int, prefix: str = "c", mosaic: int = 0, col: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{k}" for k in range(n)], "mosaic": mosaic, "row": range(n), "col": col})


def band(start: int, end: int, rows=slice(None)) -> np.ndarray:
    mask = np.zeros((S, S), bool)
    mask[rows, start:end] = True
    return mask


EMPTY = np.zeros((S, S), bool)
SALT_BELOW = band(0, S, slice(60, None))  # salt starts here: empty top edge, full bottom edge
HOLED = band(20, 80, slice(20, 80))
HOLED[40:50, 40:50] = False

# rule -> (known masks by row of a 3-tile column, predicted masks by row, the masks the rule should give)
SCENES = {
    "between": ({0: band(30, 60), 2: band(40, 70)}, {1: EMPTY}, None),
    "carry_down": ({0: band(20, 50)}, {1: EMPTY, 2: band(0, 5)}, {1: band(20, 50), 2: band(20, 50)}),
    "carry_up": ({2: band(20, 50)}, {0: EMPTY, 1: SALT_BELOW}, {0: EMPTY, 1: SALT_BELOW}),
    "empty_below_full": ({0: band(0, S)}, {1: band(10, 90), 2: band(10, 40)}, {1: EMPTY, 2: EMPTY}),
    "fill_holes": ({}, {0: HOLED, 1: EMPTY, 2: EMPTY}, {0: band(20, 80, slice(20, 80))}),
}


def scene_result(rule):
    known, predicted, _ = SCENES[rule]
    frame = column(3)
    name = lambda k: frame["id"][k]
    nb = neighbourhood(Mosaics(frame), {name(k): m for k, m in known.items()},
                       {name(k): m for k, m in predicted.items()})
    return nb, apply(nb, [rule])


def test_every_rule_has_a_scene():
    assert set(SCENES) == set(RULES)


@pytest.mark.parametrize("rule", list(RULES))
def test_what_each_rule_does_down_a_column(rule):
    known, predicted, expected = SCENES[rule]
    nb, after = scene_result(rule)
    for k, mask in known.items():
        assert np.array_equal(after[k], mask), "a known mask never changes"
    if rule == "between":  # the band moves from columns 30-60 at the top to 40-70 at the bottom
        assert after[1][0].nonzero()[0][[0, -1]].tolist() == [30, 59]
        assert after[1][-1].nonzero()[0][[0, -1]].tolist() == [40, 69]
        return
    for k, mask in expected.items():
        assert np.array_equal(after[k], mask), f"tile {k}"


def test_carrying_up_stops_below_the_tile_where_salt_starts():
    _, after = scene_result("carry_up")
    assert not after[0].any() and np.array_equal(after[1], SALT_BELOW)


def grid_scene(seed: int = 0):
    """Three columns of five tiles, random masks, split into two folds by column."""
    rng = np.random.default_rng(seed)
    frame = pd.concat([column(5, f"m{c}_", 0, c) for c in range(3)], ignore_index=True)
    ids = frame["id"].to_numpy()
    truth = rng.random((len(ids), S, S)) < 0.02
    truth[::3] = band(10, 60)  # straight salt, full columns: every rule has something to act on
    truth[1::4] = band(0, S, slice(50, None))
    preds = rng.random((len(ids), S, S)) < 0.5
    split = (np.arange(len(ids)) % 2).astype(int)
    return Mosaics(frame), ids, truth, preds, split


@pytest.mark.parametrize("rule", list(RULES))
def test_no_rule_can_read_the_truth_of_the_fold_it_decides(rule):
    mosaics, ids, truth, preds, split = grid_scene()
    for fold in (0, 1):
        held = split == fold
        other_truth = truth.copy()
        other_truth[held] = ~truth[held]  # whatever the held tiles' truth is, the rules decide the same
        results = [apply(fold_neighbourhood(mosaics, ids, t, preds, held, {}), [rule]) for t in (truth, other_truth)]
        rows = np.flatnonzero(held)
        assert np.array_equal(results[0][rows], results[1][rows])


def test_a_tile_both_known_and_predicted_is_refused():
    mosaics = Mosaics(column(2))
    with pytest.raises(PipelineError, match="must never read the truth of a tile it decides"):
        neighbourhood(mosaics, {"c0": EMPTY, "c1": EMPTY}, {"c1": EMPTY})


def test_an_unknown_rule_is_one_line():
    with pytest.raises(PipelineError, match="unknown neighbour rule 'carry_sideways'; valid: between"):
        check_rules(["carry_sideways"], "tune.json")


def two_folds_of_columns():
    """Columns of three: the top tile straight salt (known from the other fold), the two below predicted empty
    although their truth carries the salt on: carry_down mends them, fill_holes has nothing to do."""
    frames, truth, preds, split = [], [], [], []
    for c in range(6):
        frames.append(column(3, f"k{c}_", c, 0))
        for k in range(3):
            truth.append(band(20, 50))
            preds.append(band(20, 50) if k == 0 else EMPTY)
            split.append(c % 2 if k else 1 - c % 2)  # the top tile is always in the other fold
    frame = pd.concat(frames, ignore_index=True)
    return Mosaics(frame), frame["id"].to_numpy(), np.stack(truth), np.stack(preds), np.array(split)


def test_tuning_keeps_the_rules_that_raise_the_cv():
    mosaics, ids, truth, preds, split = two_folds_of_columns()
    nbs = {f: fold_neighbourhood(mosaics, ids, truth, preds, split == f, {}) for f in (0, 1)}
    kept, trials, masks = choose_rules(nbs, list(RULES), ids, truth, preds, split, min_images=10)
    assert "carry_down" in kept and "fill_holes" not in kept
    assert trials["carry_down"] == {"gain": 0.66667, "images": 12} and trials["fill_holes"]["gain"] == 0
    assert np.array_equal(masks, truth)
    kept, _, _ = choose_rules(nbs, list(RULES), ids, truth, preds, split, min_images=13)
    assert kept == []  # twelve changed images are too few evidence for a rule asked to change thirteen


def test_tune_reports_the_rules_and_submit_applies_them(tmp_path):
    from pipeline.lib.paths import WorkLayout
    mosaics, ids, truth, preds, split = two_folds_of_columns()
    probs = Probs(ids, to_levels(np.where(preds, 0.9, 0.1)))
    exp = WorkLayout(tmp_path).experiment("e")
    context = RuleContext(mosaics, None, tuple(RULES), 10)
    result = tune(probs, truth, np.zeros(truth.shape, np.uint8), split, SECTION, exp, context=context)
    assert result["decision"]["rules"] == ["carry_down"] and result["cv_score"] == 1.0
    assert result["cv_score_without_rules"] < result["cv_score"]
    test_ids = [i for i, f in zip(ids, split) if f == 0]
    after = decide_test(mosaics, {i: t for i, t, f in zip(ids, truth, split) if f == 1},
                        {i: EMPTY for i in test_ids}, ["carry_down"])
    below_known = [f"k{c}_{k}" for c in (0, 2, 4) for k in (1, 2)]  # under a known straight tile
    assert all(np.array_equal(after[i], band(20, 50)) for i in below_known)
    assert all(not after[f"k{c}_0"].any() for c in (1, 3, 5))  # above one: carry_down leaves it
