"""Checkpoints: what each file holds, saving and loading them, and building a model from one alone.

Every checkpoint holds the resolved config it was trained with (`config`) and the model weights
(`model`; under `train.ema` the moving average of the weights); the resume checkpoint (last.pt) holds the
raw weights and a `TrainingState`: the average (`ema`), the optimiser, the step, the grad scaler, the random
states, the best score so far and where the start weights came from.
A model for inference is built from its checkpoint's config, never from pretrained encoder weights, so
prediction works offline whatever `model.encoder_weights` says.
"""
from __future__ import annotations

import contextlib
import pickle
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .compat import training_state_defaults
from .config import Config
from .errors import PipelineError
from .identity import changes, describe
from .models import SaltNet, build_model
from .paths import ExperimentLayout
from .store import atomic_path, remove_stale_temps

REQUIRED = ("model", "config")


def save_checkpoint(path: Path, **state) -> None:
    """Written to a temporary file and renamed, so an interrupted save never leaves a damaged checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def numpy_globals() -> list:
    """What numpy arrays and scalars in checkpoints of earlier versions unpickle through (the random state,
    scores): plain numeric data, no code. Everything else a checkpoint holds is what torch's safe loader reads."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
            *{type(np.dtype(kind)) for kind in (np.uint32, np.int64, np.float32, np.float64, np.bool_)}]


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's contents, through torch's safe loader only (`weights_only`: a file that would run code
    when unpickled is refused, and its code never runs); a missing, truncated or foreign file is a one-line
    error naming it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"checkpoint {path} is missing; train the fold first (python -m pipeline.train)")
    allowed = getattr(torch.serialization, "safe_globals", None)
    try:
        with allowed(numpy_globals()) if allowed else contextlib.nullcontext():
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):  # else garbage, not a foreign object
            raise PipelineError(f"checkpoint {path} is damaged or not a checkpoint (UnpicklingError); delete it "
                                "and retrain that fold (python -m pipeline.train ... --force)") from None
        raise PipelineError(f"checkpoint {path} holds objects that only an unsafe loader reads (they could run "
                            "code), so it was not loaded; use checkpoints this pipeline wrote, or retrain that "
                            "fold with --force") from None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, IndexError, KeyError) as err:
        raise PipelineError(f"checkpoint {path} is damaged or not a checkpoint ({type(err).__name__}); delete it "
                            "and retrain that fold (python -m pipeline.train ... --force)") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise PipelineError(f"checkpoint {path} lacks {' and '.join(REQUIRED)}; it was not written by this "
                            "pipeline's train stage: delete it and retrain that fold with --force")
    return state


def stored_config(state: dict, path: Path) -> Config:
    try:
        return Config.model_validate(state["config"])
    except Exception as err:  # a checkpoint from an older schema
        raise PipelineError(f"checkpoint {path} holds a config this version cannot read "
                            f"({' '.join(str(err).split())[:200]}); retrain that fold with --force") from None


def model_from_checkpoint(path: Path) -> tuple[SaltNet, Config]:
    """The trained network, rebuilt from the checkpoint alone, and the config it was trained with."""
    state = load_checkpoint(path)
    config = stored_config(state, path)
    model = build_model(config.model, config.in_channels, pretrained=False,
                        encoder_bn=config.train.encoder_bn)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise PipelineError(f"checkpoint {path}: its weights do not fit the model its own config describes; "
                            "delete it and retrain that fold with --force") from None
    return model, config


@dataclass
class TrainingState:
    """What a resume checkpoint (last.pt) holds beside the weights and the config: everything a run needs to
    go on as if it had never stopped."""

    epoch: int  # the last finished epoch
    step: int  # optimiser steps taken
    best_score: float  # the best validation score so far (the saver's)
    start_weights: str  # where the encoder's start weights came from
    optimizer: dict
    scaler: dict  # empty without fp16
    rng: dict  # runtime.rng_state
    ema: dict | None = None  # the moving average's weights, under train.ema
    swa: dict | None = None  # the equal average so far (AveragedModel's state), under train.swa_epochs

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, state: dict, steps_per_epoch: int) -> "TrainingState":
        filled = training_state_defaults(state, steps_per_epoch)  # files from earlier versions
        return cls(**{f.name: filled[f.name] for f in fields(cls)})


class CheckpointSaver:
    """One fold's checkpoint files and which epoch is best: best.pt (by validation score), snapshot_C.pt
    (end of each cosine cycle), last.pt (weights and `TrainingState`, with the identity of the inputs it was
    trained on). In a DDP group every process keeps the same best score; only the `writes` one saves.
    Temporary files of a save that was killed are removed on start."""

    def __init__(self, exp: ExperimentLayout, fold: int, config: Config, identity: dict | None = None,
                 writes: bool = True):
        self.exp, self.fold, self.config, self.identity = exp, fold, config.resolved(), identity or {}
        self.writes, self.best_score = writes, -1.0
        if writes:
            self.exp.fold_dir(fold).mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.exp.fold_dir(fold))

    def save_checkpoint(self, model: torch.nn.Module, epoch: int, metric: float) -> bool:
        """Whether `metric` (this epoch's validation score) is the best so far; if so, best.pt holds `model`."""
        if metric <= self.best_score:
            return False
        self.best_score = float(metric)  # a numpy float would need more than the safe loader
        if self.writes:
            save_checkpoint(self.exp.best_checkpoint(self.fold), model=model.state_dict(), epoch=epoch,
                            score=self.best_score, config=self.config)
        return True

    def save_snapshot(self, model: torch.nn.Module, cycle: int, step: int) -> None:
        if self.writes:
            save_checkpoint(self.exp.snapshot(self.fold, cycle), model=model.state_dict(), step=step,
                            config=self.config)

    def save_last(self, model: torch.nn.Module, state: TrainingState) -> None:
        if self.writes:
            save_checkpoint(self.exp.last_checkpoint(self.fold), model=model.state_dict(), config=self.config,
                            identity=self.identity, **state.to_dict())

    def load_last(self, device: torch.device, steps_per_epoch: int) -> tuple[dict, TrainingState]:
        """last.pt's weights and training state, once its identity is this run's; the best score goes on."""
        path = self.exp.last_checkpoint(self.fold)
        stored = load_checkpoint(path, device)
        changed = changes(stored.get("identity", {}), self.identity)
        if changed:
            raise PipelineError(f"{path} was saved for other inputs ({describe(changed)}); start over with --force, "
                                "or give the changed config a new file name")
        try:
            state = TrainingState.from_dict(stored, steps_per_epoch)
        except KeyError as missing:
            raise PipelineError(f"{path} lacks {missing} (not a resume checkpoint); start over with --force") from None
        self.best_score = state.best_score
        return stored["model"], state


def fold_weights(exp: ExperimentLayout, fold: int, use_snapshots: bool) -> list[Path]:
    """The checkpoint files whose predictions are averaged for one fold: its cycle snapshots when asked
    for and present, else its best checkpoint."""
    if not exp.done_marker(fold).exists():
        raise PipelineError(f"fold {fold} of '{exp.root.name}' is not trained; run "
                            f"`python -m pipeline.train --config ... --fold {fold}` first")
    snapshots = exp.snapshots(fold) if use_snapshots else []
    return snapshots or [exp.best_checkpoint(fold)]
