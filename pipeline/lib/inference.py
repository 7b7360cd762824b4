"""The one inference path: models + images -> probabilities and image-head outputs.

Training validation, predict, ablate and bench all call `Predictor`, so the score that picks the best
checkpoint is computed from exactly the probabilities a submission is made from: the same TTA views
(flipped back), the same averaging over models (snapshots or folds), blank images predicted empty when
the model never trained on them, channels-last tensors and the same mixed precision (on CPUs with AMX
tiles bf16, `predict.cpu_precision`). (On CPUs this eager channels-last path measured as fast as or faster
than BatchNorm folding, torch.compile, TorchScript and ONNX Runtime: docs/results.md, `python -m pipeline.bench`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoints import fold_weights, model_from_checkpoint
from .config import Config
from .data import TrainSet
from .dataset import SaltDataset, is_blank
from .distributed import shows_progress
from .errors import PipelineError
from .paths import ExperimentLayout, WorkLayout
from .store import Probs, to_levels
from .geometry import from_canvas, tta_logits
from .runtime import inference_autocast, memory_format
from .tuning import search


@dataclass
class Prediction:
    probs: np.ndarray  # float32 (N, 101, 101)
    salt_prob: np.ndarray | None  # float32 (N,), the image head's P(salt), or None without a head


class Predictor:
    """Averages `models` (all trained with `config`'s data and model sections) over TTA views."""

    def __init__(self, models: list[torch.nn.Module], config: Config, device: torch.device):
        self.config, self.device = config, device
        self.models = [memory_format(model.to(device), config.train.channels_last).eval() for model in models]

    @classmethod
    def from_checkpoints(cls, files: list[Path], device: torch.device, expected: Config | None = None) -> "Predictor":
        """Models rebuilt from checkpoints alone. With `expected`, its data and model sections must be the ones
        the checkpoints were trained with; prediction settings (TTA, batch size) come from `expected`."""
        models, trained = [], None
        for path in files:
            model, config = model_from_checkpoint(path)
            if expected is not None:
                check_same_training(config, expected, path)
            models.append(model)
            trained = trained or config
        run_with = expected or trained
        return cls(models, trained.model_copy(update={"predict": run_with.predict, "train": run_with.train}), device)

    def loader(self, images: np.ndarray, depths: np.ndarray) -> DataLoader:
        c = self.config
        return DataLoader(SaltDataset(images, depths, c.data), batch_size=c.predict.batch_size,
                          num_workers=min(2, c.train.num_workers), pin_memory=self.device.type == "cuda")

    def prepare(self, images: np.ndarray, depths: np.ndarray) -> torch.Tensor:
        """All network inputs of a set, made once and kept on the device (the fold's validation images:
        no input building, no loader workers at every epoch)."""
        return torch.cat([x for x, _ in self.loader(images, depths)]).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, depths: np.ndarray, desc: str = "predicting",
                 inputs: torch.Tensor | None = None) -> Prediction:
        """Predictions for `images`; `inputs`, when given, are theirs from `prepare`."""
        c = self.config
        for model in self.models:
            model.eval()
        batches = self.loader(images, depths) if inputs is None else \
            ((x, None) for x in inputs.split(c.predict.batch_size))
        probs, heads = [], []
        for x, _ in tqdm(batches, desc=desc, leave=False, disable=len(images) < 1000 or not shows_progress()):
            x = memory_format(x.to(self.device, non_blocking=True), c.train.channels_last)
            batch_probs, batch_heads = 0, 0
            for model in self.models:
                with inference_autocast(c.train.amp, c.predict.cpu_precision, self.device):
                    p, h = tta_logits(model, x, c.predict.tta)
                batch_probs = batch_probs + from_canvas(p, c.data.input_mode)[:, 0]
                batch_heads = batch_heads + (h[:, 0] if h is not None else 0)
            probs.append((batch_probs / len(self.models)).float().cpu().numpy())
            if torch.is_tensor(batch_heads):
                heads.append((batch_heads / len(self.models)).float().cpu().numpy())
        out = np.concatenate(probs) if probs else np.zeros((0,) + images.shape[1:], np.float32)
        if c.data.drop_blank:
            out[is_blank(images)] = 0  # never trained on blank images: they are predicted empty
        return Prediction(out, np.concatenate(heads) if heads else None)


def check_same_training(trained: Config, expected: Config, path: Path) -> None:
    """The config now names the data and model a checkpoint was trained with (anything else is another
    experiment whose weights must not be scored under this one's name)."""
    ignored = {"model": {"encoder_weights"}}  # where the encoder started does not change the trained network
    for section in ("data", "model"):
        if getattr(trained, section).model_dump(exclude=ignored.get(section)) != \
                getattr(expected, section).model_dump(exclude=ignored.get(section)):
            raise PipelineError(f"checkpoint {path} was trained with another {section} section than the config "
                                f"now gives; restore the config or retrain with --force")


def fold_predictor(config: Config, exp: ExperimentLayout, fold: int, device: torch.device) -> Predictor:
    """The fold's models as predict uses them (best checkpoint, or its snapshots with predict.use_snapshots)."""
    return Predictor.from_checkpoints(fold_weights(exp, fold, config.predict.use_snapshots), device, config)


def out_of_fold(config: Config, exp: ExperimentLayout, ids: np.ndarray, images: np.ndarray, depths: np.ndarray,
                split: np.ndarray, fold: int, device: torch.device) -> tuple[Probs, Predictor]:
    """Fold `fold`'s own images (`split == fold`) predicted by that fold's models, and the predictor."""
    predictor = fold_predictor(config, exp, fold, device)
    val = split == fold
    prediction = predictor(images[val], depths[val], f"fold {fold} out-of-fold")
    return Probs(ids[val], to_levels(prediction.probs), prediction.salt_prob), predictor


def tuned_score(config: Config, work: WorkLayout, train: TrainSet, split: np.ndarray, folds: list[int],
                device: torch.device) -> float:
    """mAP of the folds' pooled out-of-fold predictions (made as predict makes them) under one tuned
    decision; `split` gives each training image's fold."""
    exp = work.experiment(config.name)
    parts = [out_of_fold(config, exp, train.ids, train.images, train.depths, split, fold, device)[0] for fold in folds]
    oof = Probs.concat(parts)
    order = np.concatenate([np.flatnonzero(split == fold) for fold in folds])  # the rows stacked above
    _, score, _ = search(oof, train.masks[order], config.tune)
    return round(score, 4)
