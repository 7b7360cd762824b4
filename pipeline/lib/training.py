"""Training one fold: the loop (`Trainer`), the per-epoch log (`EpochLog`), and `train_fold`, which ties
them to the fold's data and its `CheckpointSaver`.

Validation runs the inference path (`Predictor`, with the config's TTA) and scores the fold the way
`tune` scores a submission: the best decision (threshold, minimum area, head cut) on the fold's images.
The best checkpoint is the one with the best such score.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, update_bn
from tqdm.auto import tqdm

from . import plots
from .batches import training_batches
from .board import Board
from .checkpoints import CheckpointSaver, TrainingState
from .config import Config, save_config
from .data import load_test
from .distributed import ALONE, FoldGroup, shows_progress
from .errors import PipelineError
from .fold_data import FoldData, FoldInputs, pseudo_labelled
from .geometry import from_canvas
from .inference import InferenceSettings, Prediction, Predictor
from .losses import empty_head_loss, make_loss
from .metric import mean_score
from .models import build_model, hold_encoder_batch_norm
from .paths import InputLayout
from .postprocess import masks_from_probs
from .probs import Probs, to_levels
from .records import write_record
from .runtime import (Precision, make_optimizer, memory_format, pick_device, rng_state, seed_everything,
                      set_deterministic, set_rng_state)
from .schedule import Schedule
from .store import atomic_path
from .tuning import search, untuned

LOG_COLUMNS = ["epoch", "loss_name", "train_loss", "val_bce", "lr", "score_05", "score_best", "best_threshold",
               "swa_score", "seconds"]


def loss_for_epoch(train, epoch: int):
    after = train.switch_epoch is not None and epoch >= train.switch_epoch
    return make_loss(train.loss_after if after else train.loss)


def batch_loss(logits: torch.Tensor, head, target: torch.Tensor, loss_fn, train) -> torch.Tensor:
    """The mask loss plus, with an image head, its weighted loss. Under deep supervision the mask loss
    sees only images with salt: the head alone answers "is there salt at all"."""
    if head is None:
        return loss_fn(logits, target)
    salt = (target.flatten(1).amax(1) > 0).float() if train.deep_supervision else None  # a mask, not a selection:
    return loss_fn(logits, target, salt) + train.empty_head_weight * empty_head_loss(head, target)  # no host sync


def validation_scores(prediction: Prediction, ids: np.ndarray, masks: np.ndarray, tune) -> dict:
    """The fold's score as a submission would get it (best decision of the tune grid), the untuned score,
    and the pixel BCE of the probabilities."""
    probs = Probs(ids, to_levels(prediction.probs), prediction.salt_prob)
    decision, best, _ = search(probs, masks, tune)
    p = np.clip(prediction.probs, 1e-6, 1 - 1e-6)
    bce = float(-np.mean(np.where(masks, np.log(p), np.log1p(-p))))
    return {"score_best": best, "best_threshold": decision.threshold, "val_bce": bce,
            "score_05": mean_score(masks, masks_from_probs(probs, untuned(probs)))}


class EpochLog:
    """One row per epoch in log.csv (rewritten whole each epoch, so it is never half-written), and
    curves.png at the end; with a `board`, the same in TensorBoard, the learning rate per step too."""

    def __init__(self, path, curves_path, title: str, board: Board | None = None):
        self.path, self.curves_path, self.title, self.rows = path, curves_path, title, []
        self.board = board or Board(path.parent, False)

    def resume(self, epochs_done: int) -> None:
        if self.path.exists():
            log = pd.read_csv(self.path)
            self.rows = log[log["epoch"] < epochs_done].to_dict("records")

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.write()
        self.board.epoch(row)

    def note(self, key: str, value) -> None:
        """A figure that belongs to the last epoch's row (the SWA average's score)."""
        self.rows[-1][key] = value
        self.write()

    def write(self) -> None:
        with atomic_path(self.path) as tmp:
            self.frame().to_csv(tmp, index=False, float_format="%.6g")

    def step(self, step: int, lr: float) -> None:
        self.board.step(step, lr)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=LOG_COLUMNS)

    def plot(self, val=None, prediction: Prediction | None = None) -> None:
        """curves.png; with a board, it and the last validation's overlays (16 images) go there too."""
        plots.training_curves(self.frame(), self.curves_path, self.title)
        self.board.picture("curves", self.curves_path)
        if self.board.writer is not None and prediction is not None:
            with tempfile.TemporaryDirectory() as tmp:
                png = Path(tmp) / "overlays.png"
                pick = slice(0, 16)
                plots.overlays(val.images[pick], prediction.probs[pick] > 0.5, png, f"{self.title}: last validation",
                               truths=val.masks[pick], captions=[str(i) for i in val.ids[pick]])
                self.board.picture("validation overlays (threshold 0.5)", png)
        self.board.close()


@dataclass
class Networks:
    """The network a fold trains (`model`), its moving average (`ema`, under train.ema), the one validated,
    chosen and saved for prediction (`evaluated`: the average when there is one) and the one called in
    training steps (`forward`: `model`, or its DDP wrapper in a group)."""

    model: torch.nn.Module
    ema: ModelEmaV3 | None
    forward: torch.nn.Module
    encoder_bn: str = "train"

    @property
    def evaluated(self) -> torch.nn.Module:
        return self.model if self.ema is None else self.ema.module

    def train(self) -> None:
        self.model.train()
        hold_encoder_batch_norm(self.model, self.encoder_bn)


def networks(config: Config, device: torch.device, group: FoldGroup, pretrained: bool) -> Networks:
    t = config.train
    model = memory_format(build_model(config.model, config.in_channels, pretrained, t.encoder_bn).to(device), t.channels_last)
    hold_encoder_batch_norm(model, t.encoder_bn)  # before the optimizer: frozen parameters never get a step
    ema = ModelEmaV3(model, decay=t.ema, use_warmup=True) if t.ema > 0 else None
    forward = model if group.size == 1 else DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, process_group=group.process_group)
    return Networks(model, ema, torch.compile(forward) if t.compile else forward, t.encoder_bn)


class Trainer:
    """The training loop of one fold: batches, optimiser steps on a per-step schedule, validation.
    Checkpoints, and which epoch is best, are the `saver`'s; the per-epoch record is the `log`'s. In a
    `group` of several processes (DDP), each takes its share of every batch and only the leader writes; all
    of them validate (their weights are the same), so all agree on the best epoch without messages."""

    def __init__(self, config: Config, data: FoldData, saver: CheckpointSaver, log: EpochLog, device: torch.device,
                 group: FoldGroup = ALONE, pretrained: bool = True):
        t, fold = config.train, saver.fold
        self.config, self.data, self.saver, self.log, self.device, self.fold, self.group = \
            config, data, saver, log, device, fold, group
        check_batch(t.batch_size, group, fold, len(data.fit))
        seed_everything(t.seed + fold)
        set_deterministic(t.deterministic)
        self.batches = training_batches(config, data.fit, device, group, fold)
        self.nets = networks(config, device, group, pretrained)  # no start weights to fetch when resuming
        self.start_source = self.nets.model.start_source
        self.optimizer = make_optimizer(t, self.nets.model)
        schedule = Schedule.of(t, len(self.batches))
        self.scheduler = schedule.scheduler(self.optimizer, t.min_lr)
        self.snapshot_steps = schedule.cycle_ends() if t.cycles > 1 else []
        self.precision = Precision.training(t.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.scaled)
        self.validator = Predictor([self.nets.evaluated], InferenceSettings.of(config, device))
        self.swa = AveragedModel(self.nets.model) if t.swa_epochs else None  # the equal average of the last epochs
        self.val_inputs = self.validator.prepare(data.val.images, data.val.depths)  # once, on the device
        self.start_epoch, self.step = 0, 0

    def state(self, epoch: int) -> TrainingState:
        ema = self.nets.ema
        return TrainingState(epoch, self.step, self.saver.best_score, self.start_source, self.optimizer.state_dict(),
                             self.scaler.state_dict(), rng_state(self.batches.generator),
                             None if ema is None else ema.module.state_dict(),
                             None if self.swa is None else self.swa.state_dict())

    def resume(self) -> None:
        weights, state = self.saver.load_last(self.device, len(self.batches))
        try:
            self.nets.model.load_state_dict(weights)
            self.optimizer.load_state_dict(state.optimizer)
            if self.nets.ema is not None:
                self.nets.ema.module.load_state_dict(state.ema)
            if self.swa is not None and state.swa:
                self.swa.load_state_dict(state.swa)
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError):
            raise PipelineError(f"{self.saver.exp.last_checkpoint(self.fold)} does not fit this config's model or "
                                "optimizer (the config changed since it was saved); restore the config or start "
                                "over with --force") from None
        if state.scaler and self.scaler.is_enabled():  # empty when saved without fp16: start afresh
            self.scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng, self.batches.generator)
        self.start_epoch, self.step, self.start_source = state.epoch + 1, state.step, state.start_weights
        self.log.resume(self.start_epoch)
        print(f"fold {self.fold}: resuming after epoch {state.epoch} (best mAP {state.best_score:.4f})")

    def train_epoch(self, epoch: int, loss_fn) -> float:
        self.nets.train()
        self.batches.set_epoch(epoch)
        total = torch.zeros((), device=self.device)
        bar = tqdm(self.batches, desc=f"fold {self.fold} epoch {epoch + 1}/{self.config.train.epochs}", leave=False,
                   disable=not shows_progress())
        for n, (x, y) in enumerate(bar):
            self.optimizer_step(x, y, loss_fn, total)
            if n % 20 == 0:
                bar.set_postfix(loss=f"{total.item() / (n + 1):.4f}")
        return total.item() / len(self.batches)

    def optimizer_step(self, x, y, loss_fn, total: torch.Tensor) -> None:
        """One training step, as every run and `pipeline.bench --train-step` take it."""
        t = self.config.train
        self.scheduler.step_update(self.step)
        if self.group.leader:
            self.log.step(self.step, self.optimizer.param_groups[0]["lr"])
        x = memory_format(x.to(self.device, non_blocking=True), t.channels_last)
        y = y.to(self.device, non_blocking=True)
        with self.precision.autocast():
            logits, head = self.nets.forward(x)
            loss = batch_loss(from_canvas(logits.float(), self.batches.input_mode), head, y, loss_fn, t)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.nets.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        total += loss.detach()
        self.step += 1
        if self.nets.ema is not None:
            self.nets.ema.update(self.nets.model, step=self.step)
        if self.step in self.snapshot_steps:  # the true end of a cosine cycle, wherever it falls in the epoch
            self.saver.save_snapshot(self.nets.evaluated, self.snapshot_steps.index(self.step), self.step)

    def validate(self) -> tuple[Prediction, dict]:
        val = self.data.val
        prediction = self.validator(val.images, val.depths, f"fold {self.fold} validation", self.val_inputs)
        return prediction, validation_scores(prediction, val.ids, val.masks, self.config.tune)

    def epoch(self, epoch: int) -> tuple[dict, Prediction | None]:
        """Train one epoch and validate when due; its log row and the validation's prediction."""
        t, started, prediction = self.config.train, time.time(), None
        loss_fn = loss_for_epoch(t, epoch)
        train_loss = self.train_epoch(epoch, loss_fn)
        if self.swa is not None and epoch >= t.epochs - t.swa_epochs:
            self.swa.update_parameters(self.nets.model)
        if not np.isfinite(train_loss):
            raise PipelineError(
                f"fold {self.fold} epoch {epoch + 1}: the training loss became {train_loss}; the last good "
                f"checkpoint is kept at {self.saver.exp.last_checkpoint(self.fold)}. Lower train.lr or set "
                "train.grad_clip=1.0, then rerun with --resume")
        row = {"epoch": epoch, "loss_name": loss_fn.name, "train_loss": train_loss,
               "lr": self.optimizer.param_groups[0]["lr"]}
        if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
            prediction, scores = self.validate()
            row.update(scores)
            self.saver.save_checkpoint(self.nets.evaluated, epoch, scores["score_best"])
        row["seconds"] = round(time.time() - started, 2)
        return row, prediction

    def run(self) -> float:
        t = self.config.train
        print(f"fold {self.fold}: training on {self.device.type}, precision {self.precision} (train.amp {t.amp}), "
              f"validation {self.validator.settings.precision}", flush=True)
        prediction = None
        for epoch in range(self.start_epoch, t.epochs):
            row, prediction = self.epoch(epoch)
            if not self.group.leader:  # the leader writes and reports for the group
                continue
            self.log.add(row)
            if (epoch + 1) % t.resume_every == 0 or epoch + 1 == t.epochs:
                self.saver.save_last(self.nets.model, self.state(epoch))
            print(f"fold {self.fold} epoch {epoch + 1}/{t.epochs}: loss {row['train_loss']:.4f} "
                  f"val_bce {row.get('val_bce', np.nan):.4f} mAP@0.5 {row.get('score_05', np.nan):.4f} "
                  f"tuned {row.get('score_best', np.nan):.4f} ({row['seconds']:.0f}s)", flush=True)
        if self.swa is not None:
            self.finish_swa()
        if self.group.leader:
            self.log.plot(self.data.val, prediction)
        return self.saver.best_score

    def finish_swa(self) -> float:
        """The average's BatchNorm statistics recomputed over one pass of the fold's training batches, then
        it is validated like an epoch: best.pt when it beats every epoch (the saver decides)."""
        t, val, best = self.config.train, self.data.val, self.saver.best_score
        self.batches.set_epoch(t.epochs)
        update_bn(((memory_format(x.to(self.device), t.channels_last), y) for x, y in self.batches), self.swa)
        predictor = Predictor([self.swa.module], InferenceSettings.of(self.config, self.device))
        prediction = predictor(val.images, val.depths, f"fold {self.fold} SWA validation", self.val_inputs)
        score = validation_scores(prediction, val.ids, val.masks, self.config.tune)["score_best"]
        kept = self.saver.save_checkpoint(self.swa.module, t.epochs - 1, score)
        if self.group.leader:
            self.log.note("swa_score", score)
            print(f"fold {self.fold}: SWA of the last {t.swa_epochs} epochs: mAP {score:.4f}, best epoch {best:.4f}"
                  + (" (the average is best.pt)" if kept else ""), flush=True)
        return score


def check_batch(batch_size: int, group: FoldGroup, fold: int, images: int) -> None:
    if batch_size % group.size:
        raise PipelineError(f"train.batch_size {batch_size} does not split over the {group.size} processes "
                            f"training fold {fold}; use a multiple of {group.size}")
    if batch_size > images:
        raise PipelineError(f"train.batch_size {batch_size} exceeds the {images} training images")


def train_fold(config: Config, layout: InputLayout, inputs: FoldInputs, fold: int, resume: bool = False,
               force: bool = False, device: torch.device | None = None, group: FoldGroup = ALONE) -> float:
    """Train one fold that `records.untrained_folds` named (the caller asks, once), or any fold with `force`
    (its outputs are discarded first); returns its best validation mAP. In a `group`, every member calls
    this; the leader alone writes."""
    exp = inputs.work.experiment(config.name)
    if force and group.leader:
        shutil.rmtree(exp.fold_dir(fold), ignore_errors=True)
    group.barrier()  # the others look at the fold's files only once the leader has cleared them
    resuming = exp.last_checkpoint(fold).exists()
    if resuming and not resume:
        raise PipelineError(f"fold {fold} has a checkpoint from an earlier run ({exp.last_checkpoint(fold)}); "
                            "pass --resume to continue it or --force to start over")
    trainer = fold_trainer(config, layout, inputs, fold, device or pick_device(), group, resuming)
    try:
        best = trainer.run()
    except torch.cuda.OutOfMemoryError:
        raise PipelineError(f"CUDA ran out of memory at train.batch_size={config.train.batch_size}; "
                            "lower it (e.g. train.batch_size=16) and rerun with --resume") from None
    if group.leader:
        write_record(exp.done_marker(fold), inputs.identity(config), best_score=best, epochs=config.train.epochs,
                     precision=str(trainer.precision), device=trainer.device.type, start_weights=trainer.start_source,
                     processes=group.size)
    return best


def fold_trainer(config: Config, layout: InputLayout, inputs: FoldInputs, fold: int, device: torch.device,
                 group: FoldGroup, resuming: bool) -> Trainer:
    """The fold's Trainer on its data, saver and log (resumed from last.pt when `resuming`)."""
    exp = inputs.work.experiment(config.name)
    source = config.data.pseudo_labels
    pseudo = pseudo_labelled(inputs.work.experiment(source), load_test(layout, inputs.work)) if source else None
    data = inputs.fold_data(fold, config.data.drop_blank, pseudo)
    if group.leader:
        save_config(exp.config_yaml, config, exp.made_from_json)
    log = EpochLog(exp.log_csv(fold), exp.curves_png(fold), f"{config.name} fold {fold}",
                   Board(exp.fold_dir(fold), config.train.tensorboard and group.leader))
    saver = CheckpointSaver(exp, fold, config, inputs.identity(config), writes=group.leader)
    trainer = Trainer(config, data, saver, log, device, group, pretrained=not resuming)
    if resuming:
        trainer.resume()
    return trainer
