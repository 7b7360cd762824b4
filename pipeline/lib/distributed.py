"""Running under torchrun (PyTorch's launcher, on one machine or several): which process this is, which
folds and device it takes, and how many CPU threads it may use.

`torchrun --nproc_per_node=N -m pipeline.train --fold all` starts N processes; each trains its share of
the folds (rank r takes folds r, r+N, ...) on its own GPU (or, without GPUs, its share of the CPU cores).
torchrun stops every process when one fails and exits non-zero.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> "Rank":
        """This process's place, from the variables torchrun sets (a plain run is rank 0 of 1)."""
        get = lambda name, default: int(os.environ.get(name, default))  # noqa: E731
        world = get("WORLD_SIZE", 1)
        return cls(get("RANK", 0), world, get("LOCAL_RANK", 0), get("LOCAL_WORLD_SIZE", world))

    def share(self, folds: list[int]) -> list[int]:
        return folds[self.rank::self.world]

    def device(self) -> torch.device:
        """Its own GPU (the local rank's), else the CPU."""
        if not torch.cuda.is_available():
            return torch.device("cpu")
        torch.backends.cudnn.benchmark = True  # inputs are always one canvas size: tune kernels once
        device = torch.device("cuda", self.local % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device

    def limit_threads(self) -> None:
        """Processes on one machine split its cores, so their OpenMP threads do not fight over them."""
        if self.local_world > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_world))


def shows_progress() -> bool:
    """Progress bars from the first process on each machine only; the others log their epochs."""
    return Rank.from_env().local == 0
