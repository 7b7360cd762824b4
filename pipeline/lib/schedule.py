"""The learning-rate schedule, per optimiser step (timm's CosineLRScheduler): linear warm-up, then
`cycles` cosine cycles (warm restarts) from lr down to min_lr, each ending on a known step, where the
trainer keeps a snapshot. Steps, not epochs, so a cycle may end inside an epoch (5 epochs / 2 cycles)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.scheduler import CosineLRScheduler


@dataclass(frozen=True)
class Schedule:
    warmup_steps: int
    cycle_steps: int
    cycles: int
    total_steps: int

    @classmethod
    def of(cls, train, steps_per_epoch: int) -> "Schedule":
        total = train.epochs * steps_per_epoch
        warmup = train.warmup_epochs * steps_per_epoch
        return cls(warmup, max(1, (total - warmup) // train.cycles), train.cycles, total)

    def cycle_ends(self) -> list[int]:
        """The number of steps done when each cycle ends (its last, lowest-lr step has run)."""
        return [self.warmup_steps + (c + 1) * self.cycle_steps for c in range(self.cycles)]

    def scheduler(self, optimizer: torch.optim.Optimizer, min_lr: float) -> CosineLRScheduler:
        """Call .step_update(step) before each optimiser step; steps left over after the last cycle
        (fewer than `cycles`) run at min_lr."""
        return CosineLRScheduler(optimizer, t_initial=self.cycle_steps, lr_min=min_lr, cycle_limit=self.cycles,
                                 warmup_t=self.warmup_steps, warmup_lr_init=min_lr, warmup_prefix=True,
                                 t_in_epochs=False)
