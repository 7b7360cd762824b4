"""The one inference path: models + images -> probabilities and image-head outputs.

Training validation, predict, ablate and bench all call `Predictor`, so the score that picks the best
checkpoint is computed from exactly the probabilities a submission is made from: the same TTA views
(flipped back), the same averaging over models (snapshots or folds), blank images predicted empty when
the model never trained on them, channels-last tensors and the same mixed precision (on CPUs with AMX
tiles bf16, `predict.cpu_precision`). (On CPUs this eager channels-last path measured as fast as or faster
than BatchNorm folding, torch.compile, TorchScript and ONNX Runtime: docs/results.md, `python -m pipeline.bench`.)
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoints import fold_weights, model_from_checkpoint
from .config import Config, DataConfig
from .dataset import SaltDataset, is_blank
from .distributed import shows_progress
from .fold_data import FoldInputs
from .geometry import from_canvas, tta_logits
from .probs import Probs, to_levels
from .runtime import Precision, memory_format


@dataclass
class Prediction:
    probs: np.ndarray  # float32 (N, 101, 101)
    salt_prob: np.ndarray | None  # float32 (N,), the image head's P(salt), or None without a head


@dataclass(frozen=True)
class InferenceSettings:
    """Everything prediction reads, resolved once for one device: the network's inputs (the data section),
    TTA, batch size, memory layout, loader workers and the precision."""

    data: DataConfig
    tta: str
    batch_size: int
    channels_last: bool
    workers: int
    precision: Precision
    device: torch.device

    @classmethod
    def of(cls, config: Config, device: torch.device) -> "InferenceSettings":
        p, t = config.predict, config.train
        return cls(config.data, p.tta, p.batch_size, t.channels_last, min(2, t.num_workers),
                   Precision.inference(t.amp, p.cpu_precision, device), device)

    def but(self, **changes) -> "InferenceSettings":
        """The same settings with some changed (bench: other precisions, batch sizes, layouts)."""
        return replace(self, **changes)


class Predictor:
    """Averages `models` (all trained on `settings.data`'s inputs) over TTA views."""

    def __init__(self, models: list[torch.nn.Module], settings: InferenceSettings):
        self.settings, self.device = settings, settings.device
        self.models = [memory_format(model.to(self.device), settings.channels_last).eval() for model in models]

    def loader(self, images: np.ndarray, depths: np.ndarray) -> DataLoader:
        s = self.settings
        return DataLoader(SaltDataset(images, depths, s.data), batch_size=s.batch_size, num_workers=s.workers,
                          pin_memory=self.device.type == "cuda")

    def prepare(self, images: np.ndarray, depths: np.ndarray) -> torch.Tensor:
        """All network inputs of a set, made once and kept on the device (the fold's validation images:
        no input building, no loader workers at every epoch)."""
        return torch.cat([x for x, _ in self.loader(images, depths)]).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, depths: np.ndarray, desc: str = "predicting",
                 inputs: torch.Tensor | None = None) -> Prediction:
        """Predictions for `images`; `inputs`, when given, are theirs from `prepare`."""
        s = self.settings
        for model in self.models:
            model.eval()
        batches = self.loader(images, depths) if inputs is None else ((x, None) for x in inputs.split(s.batch_size))
        probs, heads = [], []
        for x, _ in tqdm(batches, desc=desc, leave=False, disable=len(images) < 1000 or not shows_progress()):
            batch_probs, batch_heads = self.average(memory_format(x.to(self.device, non_blocking=True), s.channels_last))
            probs.append(batch_probs.float().cpu().numpy())
            if batch_heads is not None:
                heads.append(batch_heads.float().cpu().numpy())
        out = np.concatenate(probs) if probs else np.zeros((0,) + images.shape[1:], np.float32)
        if s.data.drop_blank:
            out[is_blank(images)] = 0  # never trained on blank images: they are predicted empty
        return Prediction(out, np.concatenate(heads) if heads else None)

    def average(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One batch's probabilities (N, 101, 101) and head outputs (N,), averaged over models and views."""
        s = self.settings
        batch_probs, batch_heads = 0, 0
        for model in self.models:
            with s.precision.autocast():
                p, h = tta_logits(model, x, s.tta)
            batch_probs = batch_probs + from_canvas(p, s.data.input_mode)[:, 0]
            batch_heads = batch_heads + (h[:, 0] if h is not None else 0)
        heads = batch_heads / len(self.models) if torch.is_tensor(batch_heads) else None
        return batch_probs / len(self.models), heads


def fold_predictor(inputs: FoldInputs, config: Config, fold: int, device: torch.device) -> Predictor:
    """The fold's models as predict uses them (best checkpoint, or its snapshots with predict.use_snapshots),
    for a fold the caller has found trained for exactly this config on these inputs (`records.require_trained`:
    the one check that weights are this experiment's). Models are rebuilt from their checkpoints alone."""
    files = fold_weights(inputs.work.experiment(config.name), fold, config.predict.use_snapshots)
    return Predictor([model_from_checkpoint(path)[0] for path in files], InferenceSettings.of(config, device))


def out_of_fold(inputs: FoldInputs, config: Config, fold: int, device: torch.device) -> tuple[Probs, Predictor]:
    """Fold `fold`'s own images predicted by that fold's models, and the predictor."""
    predictor = fold_predictor(inputs, config, fold, device)
    val = inputs.split == fold
    train = inputs.train
    prediction = predictor(train.images[val], train.depths[val], f"fold {fold} out-of-fold")
    return Probs(train.ids[val], to_levels(prediction.probs), prediction.salt_prob), predictor
