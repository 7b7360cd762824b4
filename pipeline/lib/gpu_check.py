"""The first thing to run on any machine with a GPU (`python -m pipeline.bench --gpu-check`), inside a budget
of minutes: what the device is and whether this torch can run it; the real training step of a config
(default.yaml) in each precision the GPU has (images/s and peak memory); then fold 0 of that config on the
real training images for the minutes left, its schedule shortened to fit, with the validation mAP of every
epoch. Everything goes into one JSON, rewritten after each part, so a run cut short still leaves its figures.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from .archives import unpacked
from .config import load_config
from .data import load_train
from .distributed import ALONE
from .fold_data import FoldInputs, Images
from .folds import make_folds, write_folds
from .gpu import check_gpus
from .paths import InputLayout, WorkLayout
from .runtime import BF16_CAPABILITY, Precision
from .step_bench import Step, bench_trainer, sync
from .store import write_json
from .training import fold_trainer

OFFLINE = ["model.encoder_weights=none"]  # a lent GPU machine reaches no weights hub: the check starts from random


def device_facts(device: torch.device) -> dict:
    """The device, its capability and torch's architectures; one line when torch cannot run it."""
    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device.type}
    if device.type != "cuda":
        return facts
    count = check_gpus()
    major, minor = torch.cuda.get_device_capability(device)
    return {**facts, "name": torch.cuda.get_device_name(device), "gpus": count, "capability": f"{major}.{minor}",
            "archs": torch.cuda.get_arch_list(), "bf16": major >= BF16_CAPABILITY,  # in hardware, not emulated
            "memory_gb": round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1)}


def precisions(facts: dict) -> list[str]:
    """The training precisions to time: fp16 on every GPU, bf16 where it runs in hardware; a CPU float32."""
    if facts["device"] != "cuda":
        return ["none"]
    return ["fp16", "bf16"] if facts["bf16"] else ["fp16"]


def step_rates(config_file: str, overrides: list[str], images: Images, device: torch.device, steps: int,
               kinds: list[str]) -> dict:
    """The config's real training step (its first loss phase) in each precision: images/s, peak memory."""
    rates = {}
    for amp in kinds:
        config = load_config(config_file, [*OFFLINE, *overrides, f"train.amp={amp}"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rate = Step(bench_trainer(config, images, device), 0).images_per_s(steps)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
        rates[amp] = {"images_per_s": rate, "peak_memory_mb": None if peak is None else round(peak, 1)}
    return rates


def fitted(config_file: str, overrides: list[str], epochs: int) -> list[str]:
    """The config's overrides with its schedule shrunk to `epochs` (the loss switch and warm-up in proportion)."""
    t = load_config(config_file, [*OFFLINE, *overrides]).train
    if epochs >= t.epochs:
        return [*OFFLINE, *overrides]
    shrunk = [f"train.epochs={epochs}", f"train.warmup_epochs={min(t.warmup_epochs, epochs // 4)}",
              f"train.cycles={t.cycles if epochs - min(t.warmup_epochs, epochs // 4) >= 2 * t.cycles else 1}"]
    if t.switch_epoch is not None:
        shrunk.append(f"train.switch_epoch={max(1, min(epochs - 1, round(t.switch_epoch * epochs / t.epochs)))}")
    return [*OFFLINE, *overrides, *shrunk]


def epochs_that_fit(seconds: float, fit_images: int, images_per_s: float, most: int) -> int:
    """How many epochs of `fit_images` at `images_per_s` fit in `seconds` (a third more for validation and
    loading); at least 2, so that the schedule has a warm-up and an end."""
    per_epoch = fit_images / max(images_per_s, 1e-6) * 1.33
    return int(max(2, min(most, seconds // per_epoch)))


def fold_zero(config_file: str, overrides: list[str], layout: InputLayout, work: WorkLayout, device: torch.device,
              seconds: float, images_per_s: float, report: dict, save) -> None:
    """Fold 0 of the config on the real training images, its schedule shrunk to what fits in `seconds`;
    each epoch's row (loss, validation mAP at 0.5 and tuned, seconds) into report["fold0"] as it ends."""
    deadline = time.monotonic() + seconds
    train = load_train(layout, work)
    write_folds(work, make_folds(train.ids, train.coverage))
    inputs = FoldInputs.of(train, work)
    base = load_config(config_file, [*OFFLINE, *overrides])
    fit = len(inputs.fold_data(0, base.data.drop_blank).fit.ids)
    config = load_config(config_file, fitted(config_file, overrides, epochs_that_fit(seconds, fit, images_per_s,
                                                                                     base.train.epochs)))
    trainer = fold_trainer(config, layout, inputs, 0, device, ALONE, resuming=False)
    rows = []
    report["fold0"] = {"epochs_planned": config.train.epochs, "fit_images": fit, "epochs": rows}
    for epoch in range(config.train.epochs):
        last = rows[-1]["seconds"] if rows else 0.0
        if time.monotonic() + last > deadline:
            report["fold0"]["stopped"] = "the budget ran out before the planned epochs"
            break
        row, _ = trainer.epoch(epoch)
        rows.append({key: row.get(key) for key in ("epoch", "loss_name", "train_loss", "score_05", "score_best",
                                                   "seconds")})
        print(f"fold 0 epoch {epoch + 1}/{config.train.epochs}: mAP {row.get('score_best', float('nan')):.4f} "
              f"({row['seconds']:.0f} s)", flush=True)
        save()
    report["fold0"]["best_score"] = max((row["score_best"] or 0.0 for row in rows), default=None)


def gpu_check(config_file: str, overrides: list[str], input_dir: Path, device: torch.device, minutes: float,
              steps: int, yardstick, out: Path) -> dict:
    """The whole check within `minutes` from now; `yardstick(device)`: its fp32 matmul GFLOP/s."""
    started = time.monotonic()
    report = {"config": config_file, "overrides": overrides, "budget_minutes": minutes}
    save = lambda: write_json(out, report)  # noqa: E731
    report["device"] = facts = device_facts(device)
    report["matmul_2048_fp32_gflops"] = yardstick(device)
    save()
    with tempfile.TemporaryDirectory() as tmp:
        work = WorkLayout(Path(tmp))
        layout = unpacked(InputLayout(input_dir), work.unpacked_dir)
        train = load_train(layout, work)
        report["train_step"] = step_rates(config_file, overrides, Images.of(train), device, steps, precisions(facts))
        save()
        amp = Precision.training(load_config(config_file, [*OFFLINE, *overrides]).train.amp, device).name
        left = minutes * 60 - (time.monotonic() - started)
        fold_zero(config_file, overrides, layout, work, device, left, report["train_step"][amp]["images_per_s"],
                  report, save)
    sync(device)
    report["seconds"] = round(time.monotonic() - started, 1)
    save()
    return report
