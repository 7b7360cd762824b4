"""Where a training step's time goes: the real `Trainer` step timed for each loss phase, and torch.profiler's
self time grouped by operator class. `pipeline.bench` runs it for a config and its speed levers in one
process, so their ratios hold across machines (the absolute figures only on the machine measured).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from .checkpoints import CheckpointSaver
from .fold_data import FoldData, Images
from .paths import ExperimentLayout
from .training import EpochLog, Trainer, loss_for_epoch

# operator class -> substrings of aten operator names, tried in this order (backward before forward)
OPERATOR_CLASSES = {
    "convolution backward": ("convolution_backward",),
    "convolution forward": ("convolution", "conv2d"),
    "batch norm backward": ("batch_norm_backward",),
    "batch norm forward": ("batch_norm",),
    "activation backward": ("hardtanh_backward", "threshold_backward", "sigmoid_backward", "silu_backward",
                            "elu_backward"),
    "activation forward": ("hardtanh", "relu", "sigmoid", "silu", "elu", "clamp"),
    "copies": ("copy_", "clone", "contiguous"),
    "optimizer": ("_foreach", "adam", "addcdiv", "lerp"),
    "upsampling": ("upsample",),
    "sort (Lovasz)": ("sort",),
    "compiled kernels": ("compiled", "triton", "inductor", "cpp_fused"),
}


def operator_class(name: str) -> str:
    return next((kind for kind, parts in OPERATOR_CLASSES.items() if any(part in name for part in parts)), "other")


def bench_trainer(config, images: Images, device: torch.device) -> Trainer:
    """The config's real Trainer on `images` (eight of them as the validation set), writing nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        exp = ExperimentLayout(Path(tmp))
        saver = CheckpointSaver(exp, 0, config, writes=False)
        log = EpochLog(exp.log_csv(0), exp.curves_png(0), "bench")
    return Trainer(config, FoldData(images, images[:8]), saver, log, device, pretrained=False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Step:
    """The Trainer's optimiser step with the loss of one epoch's phase, on one batch its own loader made."""

    def __init__(self, trainer: Trainer, epoch: int):
        self.trainer, self.loss_fn = trainer, loss_for_epoch(trainer.config.train, epoch)
        trainer.batches.set_epoch(epoch)
        self.x, self.y = next(iter(trainer.batches))
        self.total = torch.zeros((), device=trainer.device)
        trainer.nets.train()

    def __call__(self) -> None:
        self.trainer.optimizer_step(self.x, self.y, self.loss_fn, self.total)

    def images_per_s(self, steps: int) -> float:
        self()  # warm-up: allocations, autotuning, compilation
        self()
        sync(self.trainer.device)
        started = time.perf_counter()
        for _ in range(steps):
            self()
        sync(self.trainer.device)
        return round(steps * len(self.x) / (time.perf_counter() - started), 1)

    def profile(self, steps: int = 2) -> dict[str, float]:
        """Each operator class's share of the self CPU time of `steps` steps (percent)."""
        with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                self()
        shares: dict[str, float] = {}
        for event in prof.key_averages():
            kind = operator_class(event.key)
            shares[kind] = shares.get(kind, 0.0) + event.self_cpu_time_total
        total = sum(shares.values()) or 1.0
        return {kind: round(100 * t / total, 1) for kind, t in sorted(shares.items(), key=lambda kv: -kv[1])}


@contextlib.contextmanager
def quiet_native_stderr():
    """Kineto, torch.profiler's engine, writes status lines to file descriptor 2 itself (USDT profiler_start /
    profiler_stop; on a CUDA build without a GPU an ERROR from its device probe): they say nothing about the
    measurement, so they go to /dev/null while the profiler runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure(config, images: Images, device: torch.device, steps: int) -> dict:
    """Images/s and the profile of the training step in each loss phase of `config`."""
    trainer = bench_trainer(config, images, device)
    t = config.train
    phases = {"first loss": 0} | ({"after switch": t.switch_epoch} if t.switch_epoch is not None else {})
    out = {}
    for phase, epoch in phases.items():
        step = Step(trainer, epoch)
        out[phase] = {"images_per_s": step.images_per_s(steps), "profile_percent": step.profile()}
    return out


def table(results: dict[str, dict]) -> str:
    """A Markdown table: one row per option and phase, images/s and the largest operator classes."""
    kinds = list(OPERATOR_CLASSES) + ["other"]
    lines = ["| option | phase | images/s | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    for option, phases in results.items():
        for phase, figures in phases.items():
            shares = figures["profile_percent"]
            lines.append(f"| {option} | {phase} | {figures['images_per_s']} | " +
                         " | ".join(f"{shares.get(kind, 0.0):g}" for kind in kinds) + " |")
    return "\n".join(lines)
