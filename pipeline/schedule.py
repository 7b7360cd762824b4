"""Learning-rate schedule as a pure function of (fractional) epoch: linear warm-up, then cosine
annealing in `cycles` equal cycles (warm restarts), each from lr down to min_lr."""
from __future__ import annotations

import math


def lr_at(epoch: float, t: dict) -> float:
    lr, min_lr, epochs, cycles = t["lr"], t["min_lr"], t["epochs"], t["cycles"]
    warmup = t["warmup_epochs"]
    if epoch < warmup:
        return lr * (epoch + 1e-3) / warmup
    cycle_len = epochs / cycles
    position = min(epoch, epochs - 1e-9) % cycle_len / cycle_len
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * position))


def lr_factor(epoch: float, t: dict) -> float:
    """lr_at as a multiple of the base lr, which is what LambdaLR expects."""
    return lr_at(epoch, t) / t["lr"]
