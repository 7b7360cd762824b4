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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from . import plots
from .augment import build_augment
from .board import Board
from .checkpoints import CheckpointSaver
from .config import Config, save_config
from .data import load_test, load_train
from .dataset import SaltDataset, seed_worker
from .device_batches import DeviceBatches
from .distributed import ALONE, FoldGroup, shows_progress
from .errors import PipelineError
from .fold_data import FoldData, fold_data, pseudo_labelled
from .folds import read_folds, split_digest
from .identity import changes, describe
from .geometry import from_canvas
from .inference import Prediction, Predictor
from .losses import empty_head_loss, make_loss
from .metric import mean_score
from .models import build_model
from .paths import InputLayout, WorkLayout
from .postprocess import masks_from_probs
from .runtime import (autocast, inference_precision, make_optimizer, memory_format, pick_device, resolve_amp,
                      rng_state, seed_everything, set_deterministic, set_rng_state)
from .schedule import Schedule
from .records import check_fold, fold_identity, write_record
from .store import Probs, atomic_path, to_levels
from .tuning import search, untuned

LOG_COLUMNS = ["epoch", "loss_name", "train_loss", "val_bce", "lr", "score_05", "score_best", "best_threshold",
               "seconds"]


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
        with atomic_path(self.path) as tmp:
            self.frame().to_csv(tmp, index=False, float_format="%.6g")
        self.board.epoch(row)

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


class Trainer:
    """The training loop of one fold: batches, optimiser steps on a per-step schedule, validation.
    Checkpoints go through `saver`; the per-epoch record through `log`. In a `group` of several processes
    (DDP), each takes its share of every batch and only the leader writes; all of them validate (their
    weights are the same), so all agree on the best epoch without messages."""

    def __init__(self, config: Config, data: FoldData, saver: CheckpointSaver, log: EpochLog, device: torch.device,
                 fold: int, group: FoldGroup = ALONE, pretrained: bool = True):
        t = config.train
        self.config, self.data, self.saver, self.log, self.device, self.fold = config, data, saver, log, device, fold
        self.group = group
        if t.batch_size % group.size:
            raise PipelineError(f"train.batch_size {t.batch_size} does not split over the {group.size} processes "
                                f"training fold {fold}; use a multiple of {group.size}")
        seed_everything(t.seed + fold)
        set_deterministic(t.deterministic)
        self.loader_gen = torch.Generator().manual_seed(t.seed + fold)
        self.train_loader = self.make_loader(data)
        if len(self.train_loader) == 0:
            raise PipelineError(f"train.batch_size {t.batch_size} exceeds the {len(data.fit)} training images")
        model = build_model(config.model, config.in_channels, pretrained).to(device)  # no start weights to resume
        self.start_source = model.start_source
        self.model = memory_format(model, t.channels_last)
        # with an average of the weights, the average is what is validated, chosen and saved for prediction
        self.ema = ModelEmaV3(self.model, decay=t.ema, use_warmup=True) if t.ema > 0 else None
        self.evaluated = self.model if self.ema is None else self.ema.module
        self.forward = self.model if group.size == 1 else DistributedDataParallel(
            self.model, device_ids=[device] if device.type == "cuda" else None, process_group=group.process_group)
        self.optimizer = make_optimizer(t, self.model)
        schedule = Schedule.of(t, len(self.train_loader))
        self.scheduler = schedule.scheduler(self.optimizer, t.min_lr)
        self.snapshot_steps = schedule.cycle_ends() if t.cycles > 1 else []
        self.precision = resolve_amp(t.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.validator = Predictor([self.evaluated], config, device)
        self.val_inputs = self.validator.prepare(data.val.images, data.val.depths)  # once, on the device
        self.start_epoch, self.step, self.best_score = 0, 0, -1.0

    def make_loader(self, data: FoldData):
        t, fit = self.config.train, data.fit
        group = self.group
        if t.gpu_augment:
            return DeviceBatches(fit.images, fit.depths, fit.masks, self.config, self.device, self.loader_gen,
                                 shard=(group.member, group.size))
        self.train_set = SaltDataset(fit.images, fit.depths, self.config.data, fit.masks,
                                     build_augment(self.config.augment))
        # in a group, every process draws the same order and takes its share of each batch
        self.sampler = None if group.size == 1 else DistributedSampler(
            self.train_set, group.size, group.member, shuffle=True, seed=t.seed + self.fold, drop_last=True)
        return DataLoader(self.train_set, batch_size=t.batch_size // group.size, shuffle=self.sampler is None,
                          sampler=self.sampler, drop_last=True, num_workers=t.num_workers, generator=self.loader_gen,
                          worker_init_fn=seed_worker, pin_memory=self.device.type == "cuda")

    def resume(self) -> None:
        state = self.saver.load_last(self.device)
        changed = changes(state.get("identity", {}), self.saver.identity)
        if changed:
            raise PipelineError(f"{self.saver.exp.last_checkpoint(self.fold)} was saved for other inputs "
                                f"({describe(changed)}); start over with --force, or give the changed config a "
                                "new file name")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.ema is not None:
                self.ema.module.load_state_dict(state["ema"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError):
            raise PipelineError(f"{self.saver.exp.last_checkpoint(self.fold)} does not fit this config's model or "
                                "optimizer (the config changed since it was saved); restore the config or start "
                                "over with --force") from None
        if state.get("scaler") and self.scaler.is_enabled():  # empty when saved without fp16: start afresh
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.loader_gen)
        self.start_epoch, self.best_score = state["epoch"] + 1, state["best_score"]
        self.start_source = state.get("start_weights", "unknown (saved before it was recorded)")
        self.step = state.get("step", self.start_epoch * len(self.train_loader))  # saved before steps were kept
        self.log.resume(self.start_epoch)
        print(f"fold {self.fold}: resuming after epoch {state['epoch']} (best mAP {self.best_score:.4f})")

    def train_epoch(self, epoch: int, loss_fn) -> float:
        t = self.config.train
        self.model.train()
        if not t.gpu_augment:
            self.train_set.epoch_seed = t.seed * 10007 + self.fold * 101 + epoch
            self.train_set.reseed(self.train_set.epoch_seed + self.group.member)
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)
        total = torch.zeros((), device=self.device)
        bar = tqdm(self.train_loader, desc=f"fold {self.fold} epoch {epoch + 1}/{t.epochs}", leave=False,
                   disable=not shows_progress())
        for n, (x, y) in enumerate(bar):
            self.optimizer_step(x, y, loss_fn, total)
            if n % 20 == 0:
                bar.set_postfix(loss=f"{total.item() / (n + 1):.4f}")
        return total.item() / len(self.train_loader)

    def optimizer_step(self, x, y, loss_fn, total: torch.Tensor) -> None:
        t = self.config.train
        self.scheduler.step_update(self.step)
        if self.group.leader:
            self.log.step(self.step, self.optimizer.param_groups[0]["lr"])
        x = memory_format(x.to(self.device, non_blocking=True), t.channels_last)
        y = y.to(self.device, non_blocking=True)
        with autocast(t.amp, self.device):
            logits, head = self.forward(x)
            loss = batch_loss(from_canvas(logits.float(), self.config.data.input_mode), head, y, loss_fn, t)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        total += loss.detach()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        # the true end of a cosine cycle, wherever it falls in the epoch
        if self.step in self.snapshot_steps and self.group.leader:
            self.saver.save_snapshot(self.evaluated, self.snapshot_steps.index(self.step), self.step)

    def validate(self) -> tuple[Prediction, dict]:
        val = self.data.val
        prediction = self.validator(val.images, val.depths, f"fold {self.fold} validation", self.val_inputs)
        return prediction, validation_scores(prediction, val.ids, val.masks, self.config.tune)

    def run(self) -> float:
        t = self.config.train
        validation = inference_precision(t.amp, self.config.predict.cpu_precision, self.device)
        print(f"fold {self.fold}: training on {self.device.type}, precision {self.precision} (train.amp {t.amp}), "
              f"validation {validation}", flush=True)
        for epoch in range(self.start_epoch, t.epochs):
            started = time.time()
            loss_fn = loss_for_epoch(t, epoch)
            train_loss = self.train_epoch(epoch, loss_fn)
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
                if scores["score_best"] > self.best_score:
                    self.best_score = scores["score_best"]
                    if self.group.leader:
                        self.saver.save_best(self.evaluated, epoch, self.best_score)
            row["seconds"] = round(time.time() - started, 2)
            if not self.group.leader:  # the leader writes and reports for the group
                continue
            self.log.add(row)
            if (epoch + 1) % t.resume_every == 0 or epoch + 1 == t.epochs:
                self.saver.save_last(self.model, optimizer=self.optimizer.state_dict(),
                                     scaler=self.scaler.state_dict(), rng=rng_state(self.loader_gen), epoch=epoch,
                                     step=self.step, best_score=self.best_score, start_weights=self.start_source,
                                     ema=None if self.ema is None else self.ema.module.state_dict())
            print(f"fold {self.fold} epoch {epoch + 1}/{t.epochs}: loss {train_loss:.4f} "
                  f"val_bce {row.get('val_bce', np.nan):.4f} mAP@0.5 {row.get('score_05', np.nan):.4f} "
                  f"tuned {row.get('score_best', np.nan):.4f} ({row['seconds']:.0f}s)", flush=True)
        if self.group.leader:
            self.log.plot(self.data.val, prediction if t.epochs > self.start_epoch else None)
        return self.best_score


def fold_inputs(config: Config, layout: InputLayout, work: WorkLayout):
    """The training data, the split, and the identity a fold trained now would have."""
    train = load_train(layout, work)
    frame = read_folds(work, train.ids)
    return train, frame, fold_identity(config, work, train.digest, split_digest(frame))


def pending_folds(config: Config, work: WorkLayout, inputs, folds: list[int], force: bool) -> list[int]:
    """The folds of `folds` that `train_fold` would train, given `fold_inputs`; a fold trained for other
    inputs is an error unless `force`."""
    if force:
        return folds
    exp, (_, _, identity) = work.experiment(config.name), inputs
    return [fold for fold in folds if not check_fold(exp, fold, identity)]


def train_fold(config: Config, layout: InputLayout, work: WorkLayout, fold: int, resume: bool = False,
               force: bool = False, device: torch.device | None = None, group: FoldGroup = ALONE,
               inputs=None) -> float | None:
    """Train one fold; returns its best validation mAP, or None when it was already trained for exactly
    these inputs. A fold trained (or half-trained) for other inputs is an error unless `force`. In a
    `group`, every member calls this; the leader alone writes. `inputs`: `fold_inputs`, when made already."""
    exp = work.experiment(config.name)
    train, frame, identity = inputs or fold_inputs(config, layout, work)
    split = frame["fold"].to_numpy()
    pseudo_source = config.data.pseudo_labels
    pseudo = pseudo_labelled(work.experiment(pseudo_source), load_test(layout, work)) if pseudo_source else None
    if force and group.leader:
        shutil.rmtree(exp.fold_dir(fold), ignore_errors=True)
    group.barrier()  # the others look at the fold's files only once the leader has cleared them
    if check_fold(exp, fold, identity):
        print(f"fold {fold}: up to date ({exp.done_marker(fold)}); pass --force to retrain")
        return None
    if exp.last_checkpoint(fold).exists() and not resume:
        raise PipelineError(f"fold {fold} has a checkpoint from an earlier run ({exp.last_checkpoint(fold)}); "
                            "pass --resume to continue it or --force to start over")
    data = fold_data(train, split, fold, config.data.drop_blank, pseudo)
    if group.leader:
        save_config(exp.config_yaml, config, exp.made_from_json)
    log = EpochLog(exp.log_csv(fold), exp.curves_png(fold), f"{config.name} fold {fold}",
                   Board(exp.fold_dir(fold), config.train.tensorboard and group.leader))
    resuming = resume and exp.last_checkpoint(fold).exists()
    trainer = Trainer(config, data, CheckpointSaver(exp, fold, config, identity), log, device or pick_device(), fold,
                      group, pretrained=not resuming)
    if resuming:
        trainer.resume()
    try:
        best = trainer.run()
    except torch.cuda.OutOfMemoryError:
        raise PipelineError(f"CUDA ran out of memory at train.batch_size={config.train.batch_size}; "
                            "lower it (e.g. train.batch_size=16) and rerun with --resume") from None
    if group.leader:
        write_record(exp.done_marker(fold), identity, best_score=best, epochs=config.train.epochs,
                     precision=trainer.precision, device=trainer.device.type, start_weights=trainer.start_source,
                     processes=group.size)
    return best
