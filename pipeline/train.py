"""Stage: train one fold (or all) of an experiment.

    python -m pipeline.train --config pipeline/configs/default.yaml --fold 0 [--input DIR] [key=value ...]
    python -m pipeline.train --config ... --fold all [--resume] [--force]

Outputs, per fold, in experiments/<name>/fold_K/: last.pt and best.pt (by validation mAP),
snapshot_C.pt at the end of each cosine cycle, log.csv (one row per epoch), curves.png and done.json;
the resolved config goes to experiments/<name>/config.yaml.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import cli, plots
from .augment import build_augment
from .config import load_config, save_config
from .data import load_test, load_train
from .dataset import SaltDataset, check_channels, is_blank, seed_worker
from .device_batches import DeviceBatches, check_supported
from .errors import PipelineError, run_stage
from .folds import read_folds
from .geometry import check_mode, from_canvas
from .losses import empty_head_loss, make_loss
from .metric import threshold_grid_scores
from .models import build_model
from .paths import ExperimentLayout, InputLayout, WorkLayout
from .schedule import lr_factor
from .runtime import (autocast, make_optimizer, memory_format, pick_device, rng_state, save_checkpoint,
                      seed_everything, set_rng_state)
from .store import atomic_path, to_levels, write_json

VAL_THRESHOLDS = np.round(np.linspace(0.3, 0.7, 9), 3)
LOG_COLUMNS = ["epoch", "loss_name", "train_loss", "val_loss", "lr", "score_05", "score_best",
               "best_threshold", "seconds"]


def check_config(config: dict) -> None:
    """Fail on a bad name before any data is loaded or time is spent."""
    check_mode(config["data"]["input_mode"])
    check_channels(config["data"]["channels"])
    build_augment(config["augment"])
    if config["train"]["gpu_augment"]:
        check_supported(config["augment"])
    make_loss(config["train"]["loss"])
    make_loss(config["train"]["loss_after"])
    make_optimizer(config, torch.nn.Linear(1, 1))
    if config["train"]["epochs"] < 1 or config["train"]["cycles"] < 1:
        raise PipelineError("train.epochs and train.cycles must be at least 1")


def loss_for_epoch(config: dict, epoch: int):
    t = config["train"]
    after = t["switch_epoch"] is not None and epoch >= t["switch_epoch"]
    return make_loss(t["loss_after"] if after else t["loss"])


def batch_loss(logits: torch.Tensor, head, target: torch.Tensor, loss_fn, t: dict) -> torch.Tensor:
    """The mask loss plus, with an image head, its weighted loss. Under deep supervision the mask loss
    sees only images with salt: the head alone answers "is there salt at all"."""
    if head is None:
        return loss_fn(logits, target)
    if t["deep_supervision"]:
        salt = target.flatten(1).amax(1) > 0
        mask_loss = loss_fn(logits[salt], target[salt]) if salt.any() else logits.sum() * 0
    else:
        mask_loss = loss_fn(logits, target)
    return mask_loss + t["empty_head_weight"] * empty_head_loss(head, target)


def add_pseudo_labels(images, depths, masks, config: dict, layout: InputLayout, work: WorkLayout):
    """Append the test images that `data.pseudo_labels` (an experiment's name) labelled confidently."""
    source = work.experiment(config["data"]["pseudo_labels"]).pseudo_labels
    if not source.exists():
        raise PipelineError(f"{source} is missing; run `python -m pipeline.pseudo --config "
                            f"<{config['data']['pseudo_labels']}'s config>` first")
    with np.load(source) as stored:
        ids, pseudo_masks = stored["ids"].astype(str), stored["masks"]
    test = load_test(layout, work)
    rows = pd.Index(test.ids).get_indexer(ids)
    if (rows < 0).any():
        raise PipelineError(f"{source} names test ids that are not in the input's sample_submission.csv; rerun pseudo")
    print(f"adding {len(rows)} pseudo-labelled test images from {source}")
    return (np.concatenate([images, test.images[rows]]), np.concatenate([depths, test.depths[rows]]),
            np.concatenate([masks, pseudo_masks]))


def gate_by_head(probs: torch.Tensor, head_logits: torch.Tensor | None) -> torch.Tensor:
    """(N, H, W) probabilities with the images whose head says P(salt) < 0.5 zeroed."""
    if head_logits is None:
        return probs
    return probs * (head_logits.float().view(-1, 1, 1) >= 0).to(probs.dtype)  # logit >= 0 <=> P >= 0.5


class FoldTrainer:
    """Everything one fold's training holds; `run()` trains from the start or the last checkpoint."""

    def __init__(self, config: dict, layout: InputLayout, work: WorkLayout, fold: int, device: torch.device):
        self.config, self.fold, self.device = config, fold, device
        self.exp: ExperimentLayout = work.experiment(config["name"])
        t = config["train"]
        seed_everything(t["seed"] + fold)
        train = load_train(layout, work)
        split = read_folds(work, train.ids)["fold"].to_numpy()
        if fold not in set(split):
            raise PipelineError(f"fold {fold} is not in {work.folds_csv} (folds: {sorted(set(split))})")
        fit = split != fold
        if config["data"]["drop_blank"]:
            fit &= ~is_blank(train.images)
        val = split == fold
        images, depths, masks = train.images[fit], train.depths[fit], train.masks[fit]
        if config["data"]["pseudo_labels"]:
            images, depths, masks = add_pseudo_labels(images, depths, masks, config, layout, work)
        self.train_set = SaltDataset(images, depths, config, masks, build_augment(config["augment"]))
        self.val_set = SaltDataset(train.images[val], train.depths[val], config, train.masks[val])
        self.val_masks = train.masks[val]
        self.loader_gen = torch.Generator().manual_seed(t["seed"] + fold)
        workers = t["num_workers"]
        if t["gpu_augment"]:
            self.train_loader = DeviceBatches(images, depths, masks, config, device, self.loader_gen)
        else:
            self.train_loader = DataLoader(self.train_set, batch_size=t["batch_size"], shuffle=True,
                                           drop_last=True, num_workers=workers, generator=self.loader_gen,
                                           worker_init_fn=seed_worker, pin_memory=device.type == "cuda")
        self.val_loader = DataLoader(self.val_set, batch_size=t["batch_size"] * 2, num_workers=workers,
                                     pin_memory=device.type == "cuda")
        if len(self.train_loader) == 0:
            raise PipelineError(f"train.batch_size {t['batch_size']} exceeds the {len(images)} training images")
        self.model = build_model(config).to(device)
        self.model = memory_format(self.model, config)
        self.optimizer = make_optimizer(config, self.model)
        steps = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step / steps, t))
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and t["amp"] == "fp16")
        self.start_epoch, self.best_score, self.rows = 0, -1.0, []

    def resume(self) -> None:
        state = torch.load(self.exp.last_checkpoint(self.fold), map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.loader_gen)
        self.start_epoch, self.best_score = state["epoch"] + 1, state["best_score"]
        if self.exp.log_csv(self.fold).exists():
            log = pd.read_csv(self.exp.log_csv(self.fold))
            self.rows = log[log["epoch"] < self.start_epoch].to_dict("records")
        print(f"fold {self.fold}: resuming after epoch {state['epoch']} (best mAP {self.best_score:.4f})")

    def train_epoch(self, epoch: int, loss_fn) -> float:
        self.model.train()
        self.train_set.epoch_seed = self.config["train"]["seed"] * 10007 + self.fold * 101 + epoch
        self.train_set.reseed(self.train_set.epoch_seed)
        t = self.config["train"]
        total = torch.zeros((), device=self.device)
        bar = tqdm(self.train_loader, desc=f"fold {self.fold} epoch {epoch + 1}/{t['epochs']}", leave=False)
        for step, (x, y) in enumerate(bar):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            x = memory_format(x, self.config)
            with autocast(self.config, self.device):
                logits, head = self.model(x)
                loss = batch_loss(from_canvas(logits.float(), self.config["data"]["input_mode"]), head, y,
                                  loss_fn, t)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if t["grad_clip"] > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t["grad_clip"])
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total += loss.detach()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total.item() / (step + 1):.4f}")
        return total.item() / len(self.train_loader)

    @torch.no_grad()
    def validate(self, loss_fn) -> tuple[float, np.ndarray]:
        """Validation loss and probabilities (N, 101, 101), no TTA; with an image head, the masks of the
        images it calls empty (P(salt) < 0.5) are zeroed, as at prediction time, so that the score that
        picks the best checkpoint is the one a submission would see."""
        self.model.eval()
        losses, probs = [], []
        for x, y in self.val_loader:
            x, y = memory_format(x.to(self.device), self.config), y.to(self.device)
            with autocast(self.config, self.device):
                logits, head = self.model(x)
            logits = from_canvas(logits.float(), self.config["data"]["input_mode"])
            losses.append(loss_fn(logits, y).item() * len(x))
            probs.append(gate_by_head(torch.sigmoid(logits)[:, 0], head).cpu().numpy())
        return sum(losses) / len(self.val_set), np.concatenate(probs)

    def checkpoint_state(self, epoch: int) -> dict:
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
                    rng=rng_state(self.loader_gen), epoch=epoch, best_score=self.best_score, config=self.config)

    def end_of_cycle(self, epoch: int) -> int | None:
        t = self.config["train"]
        cycle_len = t["epochs"] / t["cycles"]
        cycle = int(round((epoch + 1) / cycle_len))
        return cycle - 1 if abs((epoch + 1) - cycle * cycle_len) < 0.5 and t["cycles"] > 1 else None

    def run(self) -> float:
        t = self.config["train"]
        for epoch in range(self.start_epoch, t["epochs"]):
            started = time.time()
            loss_fn = loss_for_epoch(self.config, epoch)
            train_loss = self.train_epoch(epoch, loss_fn)
            if not np.isfinite(train_loss):
                raise PipelineError(
                    f"fold {self.fold} epoch {epoch + 1}: the training loss became {train_loss}; the last good "
                    f"checkpoint is kept at {self.exp.last_checkpoint(self.fold)}. Lower train.lr, set "
                    "train.grad_clip=1.0 or use train.amp=bf16, then rerun with --resume")
            row = {"epoch": epoch, "loss_name": loss_fn.name, "train_loss": train_loss, "val_loss": np.nan,
                   "lr": self.optimizer.param_groups[0]["lr"], "score_05": np.nan, "score_best": np.nan,
                   "best_threshold": np.nan}
            if (epoch + 1) % t["val_every"] == 0 or epoch + 1 == t["epochs"]:
                val_loss, probs = self.validate(loss_fn)
                scores = threshold_grid_scores(to_levels(probs), self.val_masks, VAL_THRESHOLDS)
                best = int(np.argmax(scores))
                row.update(val_loss=val_loss, score_05=float(scores[list(VAL_THRESHOLDS).index(0.5)]),
                           score_best=float(scores[best]), best_threshold=float(VAL_THRESHOLDS[best]))
                if scores[best] > self.best_score:
                    self.best_score = float(scores[best])
                    save_checkpoint(self.exp.best_checkpoint(self.fold), model=self.model.state_dict(),
                                    epoch=epoch, score=self.best_score, config=self.config)
            row["seconds"] = round(time.time() - started, 2)
            self.rows.append(row)
            self.write_log()
            cycle = self.end_of_cycle(epoch)
            if cycle is not None:
                save_checkpoint(self.exp.snapshot(self.fold, cycle), model=self.model.state_dict(), epoch=epoch,
                                config=self.config)
            save_checkpoint(self.exp.last_checkpoint(self.fold), **self.checkpoint_state(epoch))
            print(f"fold {self.fold} epoch {epoch + 1}/{t['epochs']}: loss {train_loss:.4f} "
                  f"val_loss {row['val_loss']:.4f} mAP@0.5 {row['score_05']:.4f} best {row['score_best']:.4f} "
                  f"({row['seconds']:.0f}s)", flush=True)
        plots.training_curves(pd.DataFrame(self.rows, columns=LOG_COLUMNS), self.exp.curves_png(self.fold),
                              f"{self.config['name']} fold {self.fold}")
        write_json(self.exp.done_marker(self.fold), {"best_score": self.best_score, "epochs": t["epochs"]})
        return self.best_score

    def write_log(self) -> None:
        with atomic_path(self.exp.log_csv(self.fold)) as tmp:
            pd.DataFrame(self.rows, columns=LOG_COLUMNS).to_csv(tmp, index=False, float_format="%.6g")


def train_fold(config: dict, layout: InputLayout, work: WorkLayout, fold: int, resume: bool = False,
               force: bool = False) -> float | None:
    """Train one fold; returns its best validation mAP, or None when it was already trained."""
    exp = work.experiment(config["name"])
    if force:
        shutil.rmtree(exp.fold_dir(fold), ignore_errors=True)
    if exp.done_marker(fold).exists():
        print(f"fold {fold}: already trained ({exp.done_marker(fold)}); pass --force to retrain")
        return None
    if exp.last_checkpoint(fold).exists() and not resume:
        raise PipelineError(f"fold {fold} has a checkpoint from an earlier run ({exp.last_checkpoint(fold)}); "
                            "pass --resume to continue it or --force to start over")
    save_config(exp.config_yaml, config)
    device = pick_device()
    trainer = FoldTrainer(config, layout, work, fold, device)
    if resume and exp.last_checkpoint(fold).exists():
        trainer.resume()
    try:
        return trainer.run()
    except torch.cuda.OutOfMemoryError:
        raise PipelineError(f"CUDA ran out of memory at train.batch_size={config['train']['batch_size']}; "
                            "lower it (e.g. train.batch_size=16) and rerun with --resume") from None


def fold_list(text: str, work: WorkLayout) -> list[int]:
    """'all', one fold number, or a comma-separated list of them ('0,2')."""
    if text == "all":
        if not work.folds_csv.exists():
            raise PipelineError(f"{work.folds_csv} is missing; run `python -m pipeline.folds` first")
        return sorted(pd.read_csv(work.folds_csv)["fold"].unique().tolist())
    try:
        return sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise PipelineError(f"--fold must be a fold number, a list like 0,2, or 'all'; got '{text}'") from None


def child_command(args, fold: int) -> list[str]:
    command = [sys.executable, "-m", "pipeline.train", "--config", args.config, "--fold", str(fold)]
    for flag in ("input", "workdir"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    command += ["--resume"] * args.resume + ["--force"] * args.force
    return command + list(args.overrides)


def train_parallel(args, folds: list[int], slots: int, gpus: int) -> None:
    """Up to `slots` fold processes at once, each taking the next fold: one per GPU when there are
    GPUs, else each on its share of the CPU cores. A failure stops the rest."""
    pending, running = list(folds), {}
    threads = max(1, (os.cpu_count() or 1) // slots)
    while pending or running:
        while pending and len(running) < slots:
            slot = next(s for s in range(slots) if s not in running)
            fold = pending.pop(0)
            env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": str(slot)} if gpus else {"OMP_NUM_THREADS": str(threads)}))
            running[slot] = (fold, subprocess.Popen(child_command(args, fold), env=env))
        time.sleep(1)
        for slot, (fold, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[slot]
            if proc.returncode:
                for _, other in running.values():
                    other.terminate()
                where = f"GPU {slot}" if gpus else f"worker {slot}"
                raise PipelineError(f"fold {fold} failed on {where} (exit {proc.returncode}); see its output above")


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--fold", required=True, help="a fold number, a list like 0,2, or 'all'")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fold from last.pt")
    p.add_argument("--force", action="store_true", help="discard a fold's outputs and train it again")
    p.add_argument("--parallel", type=int, default=None,
                   help="folds trained at once (default: one per GPU when there are several, else 1)")
    p.add_argument("overrides", nargs="*", help="dotted key=value pairs, e.g. train.epochs=1")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    check_config(config)
    layout, work = cli.layouts(args)
    folds = fold_list(args.fold, work)
    gpus = torch.cuda.device_count()
    slots = args.parallel or (gpus if gpus > 1 else 1)
    if gpus and slots > gpus:
        raise PipelineError(f"--parallel {slots} exceeds the {gpus} GPU(s) torch sees")
    if len(folds) > 1 and slots > 1:
        train_parallel(args, folds, slots, gpus)
        return
    for fold in folds:
        train_fold(config, layout, work, fold, args.resume, args.force)


if __name__ == "__main__":
    run_stage(main)
