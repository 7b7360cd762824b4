"""TensorBoard event files for one fold (`train.tensorboard`): every log.csv column per epoch, the learning
rate per optimiser step, and the fold's pictures at the end, under experiments/<name>/fold_K/, so that
`tensorboard --logdir experiments` lays every experiment and fold side by side (offline).

TensorBoard is an optional dependency: without it the key is a one-line note and training goes on.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2

INSTALL = "pip install tensorboard, or python -m pipeline.deps --extras tensorboard"


class Board:
    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print(f"note: train.tensorboard needs the tensorboard package ({INSTALL}); training goes on without "
                  "event files", flush=True)
            return
        self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, row: dict) -> None:
        """One log.csv row: its numeric columns, at step epoch + 1."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, row["epoch"] + 1)
        self.writer.flush()

    def step(self, step: int, lr: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("step/lr", lr, step)

    def picture(self, tag: str, png: Path) -> None:
        if self.writer is not None and png.exists():
            image = cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            self.writer.add_image(tag, image, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
