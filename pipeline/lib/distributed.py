"""Running under torchrun (PyTorch's launcher, on one machine or several): which process this is, which
folds and device it takes, and how many CPU threads it may use.

`torchrun --nproc_per_node=N -m pipeline.train --fold all` starts N processes; each trains its share of
the folds still to train (rank r takes folds r, r+N, ...) on its own GPU (or, without GPUs, its share of
the CPU cores). With more processes than folds to train, each fold is trained by a group of processes
with DistributedDataParallel (`FoldGroup`): the fold's batch is split over them, gradients are averaged,
and the group's first process (its leader) alone writes checkpoints, logs and records.
torchrun stops every process when one fails and exits non-zero.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .gpu import check_gpus


@dataclass(frozen=True)
class FoldGroup:
    """The processes that train one fold together (size 1: a process training alone, no DDP)."""
    size: int = 1
    member: int = 0
    process_group: object = None

    @property
    def leader(self) -> bool:
        return self.member == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier(group=self.process_group)


ALONE = FoldGroup()


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

    def plan(self, folds: list[int]) -> list[tuple[int, FoldGroup]]:
        """The folds this process trains, each with the group it trains it with. `folds`: those still to
        train, as this process sees them; all processes go by the first one's list (one may look after
        another has already finished a fold)."""
        if self.world > 1:
            folds = self.agreed(folds)
        if self.world <= len(folds) or not folds:
            return [(fold, ALONE) for fold in self.share(folds)]
        members = fold_members(self.world, len(folds))
        handles = [dist.new_group(ranks) for ranks in members]  # every process makes every group, in order
        mine = self.rank % len(folds)
        if len(members[mine]) == 1:
            return [(folds[mine], ALONE)]
        return [(folds[mine], FoldGroup(len(members[mine]), members[mine].index(self.rank), handles[mine]))]

    @staticmethod
    def agreed(value):
        """Rank 0's `value`, on every process."""
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def device(self) -> torch.device:
        """Its own GPU (the local rank's), else the CPU; a GPU this torch cannot run is one line, at once."""
        gpus = check_gpus()
        if not gpus:
            return torch.device("cpu")
        tune_kernels()
        device = torch.device("cuda", self.local % gpus)
        torch.cuda.set_device(device)
        return device

    def limit_threads(self) -> None:
        """Processes on one machine split its cores, so their OpenMP threads do not fight over them."""
        if self.local_world > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_world))


def shows_progress() -> bool:
    """Progress bars from the first process on each machine only; the others log their epochs."""
    return Rank.from_env().local == 0


def fold_members(world: int, folds: int) -> list[list[int]]:
    """With more processes than folds: the ranks that train each fold together (rank r takes fold r mod F)."""
    return [list(range(world))[i::folds] for i in range(folds)]


def finish() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def local_devices() -> list[torch.device]:
    """Every GPU of this machine (each one torch can run, else one line), else the CPU (`status` asks too)."""
    gpus = check_gpus()
    if not gpus:
        return [torch.device("cpu")]
    return [torch.device("cuda", index) for index in range(gpus)]


def tune_kernels() -> None:
    """For a process about to run on GPUs: inputs are always one canvas size, so cuDNN may time its kernels
    once and keep the fastest."""
    torch.backends.cudnn.benchmark = True


def spread(items: list, devices: list[torch.device], work) -> list:
    """`work(item, device)` for every item, the items dealt out over `devices` with one thread per device
    (torch lets go of Python while kernels run, so the GPUs work at the same time); results in item order."""
    if len(devices) == 1:
        return [work(item, devices[0]) for item in items]
    shares = [(items[i::len(devices)], device) for i, device in enumerate(devices)]
    with ThreadPoolExecutor(len(devices)) as pool:
        futures = [pool.submit(lambda share=share, device=device: [work(item, device) for item in share])
                   for share, device in shares]
        done = {}
        for (share, _), future in zip(shares, futures):
            done.update(zip(share, future.result()))
    return [done[item] for item in items]
