import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import folds
from pipeline.lib.config import TrainConfig
from pipeline.lib.data import load_test, load_train
from pipeline.lib.fold_data import fold_data, pseudo_labelled
from pipeline.lib.folds import read_folds
from pipeline.lib.losses import make_loss
from pipeline.lib.paths import InputLayout, WorkLayout
from pipeline.lib.probs import Probs, save_probs, to_levels
from pipeline.lib.training import batch_loss
from pipeline.pseudo import confident, pseudo_label


def test_confident_images_by_hand():
    sure = np.where(np.arange(101 * 101).reshape(101, 101) < 5000, 0.95, 0.05)
    unsure = np.full((101, 101), 0.5)
    mixed = sure.copy()
    mixed[:20] = 0.5  # about 20% of pixels unsure
    probs = Probs(np.array(["a", "b", "c"]), to_levels(np.stack([sure, unsure, mixed])))
    assert confident(probs, 0.2, 0.8, 0.9).tolist() == [True, False, False]
    assert confident(probs, 0.2, 0.8, 0.75).tolist() == [True, False, True]


def test_the_image_head_decides_which_images_are_confident():
    """A deep-supervised mask never learns on empty images, so their pixels may be unsure: the head says."""
    sure = np.where(np.arange(101 * 101).reshape(101, 101) < 5000, 0.95, 0.05)
    unsure = np.full((101, 101), 0.7)
    probs = Probs(np.array(["a", "b", "c", "d"]), to_levels(np.stack([sure, unsure, sure, unsure])),
                  np.array([0.95, 0.05, 0.5, 0.95], np.float32))
    assert confident(probs, 0.2, 0.8, 0.9).tolist() == [True, True, False, False]


def test_pseudo_masks_are_what_the_submission_would_hold(tmp_path):
    """The tuned decision, head cut included: a confidently empty image gets an empty mask."""
    work = WorkLayout(tmp_path)
    exp = work.experiment("teacher")
    salt = np.where(np.arange(101 * 101).reshape(101, 101) < 5000, 0.95, 0.05)
    unsure = np.full((101, 101), 0.7)  # above the threshold, but the head says empty
    save_probs(exp.test_probs, Probs(np.array(["a", "b"]), to_levels(np.stack([salt, unsure])),
                                     np.array([0.95, 0.05], np.float32)))
    exp.tune_json.write_text(json.dumps({"decision": {"threshold": 0.5, "min_area": 10, "empty_cut": 0.3}}))
    assert pseudo_label(work, "teacher", 0.2, 0.8, 0.9) == {"images": 2, "of": 2, "with_salt": 0.5}
    with np.load(exp.pseudo_labels) as stored:
        assert stored["ids"].tolist() == ["a", "b"]
        assert stored["masks"][0].sum() == 5000 and not stored["masks"][1].any()
    exp.tune_json.write_text(json.dumps({"decision": {"threshold": 0.5, "min_area": 0, "empty_cut": None}}))
    pseudo_label(work, "teacher", 0.2, 0.8, 0.9)  # no head cut tuned: the head's confident empty still rules
    with np.load(exp.pseudo_labels) as stored:
        assert not stored["masks"][1].any()


def test_deep_supervision_ignores_empty_images_in_the_mask_loss():
    t = TrainConfig(deep_supervision=True, empty_head_weight=0.0)
    logits = torch.randn(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, :2] = 1  # image 0 has salt, image 1 is empty
    bce = make_loss({"bce": 1})
    head = torch.zeros(2, 1)
    assert batch_loss(logits, head, target, bce, t).item() == pytest.approx(bce(logits[:1], target[:1]).item())
    t = t.model_copy(update={"deep_supervision": False})
    assert batch_loss(logits, head, target, bce, t).item() == pytest.approx(bce(logits, target).item())


def test_pseudo_labels_join_training(demo_input, tmp_path, capsys):
    work = WorkLayout(tmp_path, n_folds=3)
    ids = pd.read_csv(demo_input / "sample_submission.csv", dtype=str)["id"].to_numpy()
    probs = np.zeros((len(ids), 101, 101))
    probs[: len(ids) // 2, :50] = 1.0  # half the images: confident salt in the top half
    probs[-3:] = 0.5  # three unsure images
    save_probs(work.experiment("teacher").test_probs, Probs(ids, to_levels(probs)))
    summary = pseudo_label(work, "teacher", 0.2, 0.8, 0.9)
    assert summary["images"] == len(ids) - 3
    with np.load(work.experiment("teacher").pseudo_labels) as stored:
        assert stored["masks"][0, :50].all() and not stored["masks"][0, 50:].any()

    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "3"])
    layout = InputLayout(demo_input)
    train = load_train(layout)
    split = read_folds(work, train.ids)["fold"].to_numpy()
    pseudo = pseudo_labelled(work.experiment("teacher"), load_test(layout))
    data = fold_data(train, split, 0, False, pseudo)
    assert len(data.fit) == 40 + len(ids) - 3  # 2 of 3 folds of 60 train images, plus the pseudo set
    assert len(data.val) == 20 and not set(data.val.ids) & set(data.fit.ids)
    assert data.fit.masks[-len(pseudo):].tolist() == pseudo.masks.tolist()
    assert "adding 27 pseudo-labelled test images" in capsys.readouterr().out
