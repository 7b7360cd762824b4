"""The k-fold CV of trained folds, scored as `tune` scores a submission: their out-of-fold predictions made
by the one inference path, pooled, under one tuned decision (what ablate tables and bench reports)."""
from __future__ import annotations

import numpy as np
import torch

from . import analysis
from .config import Config
from .fold_data import FoldInputs
from .inference import out_of_fold
from .postprocess import masks_from_probs
from .probs import Probs
from .records import require_trained
from .tuning import search


def tuned_score(inputs: FoldInputs, config: Config, folds: list[int], device: torch.device) -> dict:
    """`tuned_mAP`: the mAP of the folds' pooled out-of-fold predictions (made as predict makes them) under one
    tuned decision, and the mAP lost on empty images, small masks and the rest (`analysis.points_by_size`)."""
    require_trained(inputs.work.experiment(config.name), folds, inputs.identity(config))
    oof = Probs.concat([out_of_fold(inputs, config, fold, device)[0] for fold in folds])
    order = np.concatenate([np.flatnonzero(inputs.split == fold) for fold in folds])  # the rows stacked above
    truth = inputs.train.masks[order]
    decision, score, _ = search(oof, truth, config.tune)
    frame = analysis.per_image(oof.ids, inputs.split[order], truth, masks_from_probs(oof, decision), oof.salt_prob)
    return {"tuned_mAP": round(score, 4), **analysis.points_by_size(frame)}
