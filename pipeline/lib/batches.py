"""Training batches, one interface for both ways of making them: iterate (input, mask) batches, `len`,
`set_epoch(epoch)` before each epoch, `input_mode`, the canvas of the epoch's batches (progressive resizing:
`train.early_input_mode` for the first `train.early_epochs`), and `generator`, the CPU generator their random
draws come from (saved in the resume checkpoint, so a resumed run draws what the uninterrupted one would have).

  LoaderBatches  albumentations on the CPU, in DataLoader workers (the default)
  DeviceBatches  the train set held on the device and augmented there (train.gpu_augment)

In a DDP group every process draws the same order and takes its share of each batch.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler

from .augment import build_augment
from .dataset import SaltDataset, seed_worker
from .device_batches import DeviceBatches
from .distributed import FoldGroup
from .geometry import epoch_input_mode


class LoaderBatches:
    """A DataLoader over the fit images, reseeded per epoch: its workers' augmentations depend on the
    seed, fold and epoch only (and the process's place in its group)."""

    def __init__(self, fit, config, device: torch.device, generator: torch.Generator, group: FoldGroup, fold: int):
        t = config.train
        self.generator, self.member, self.seed = generator, group.member, t.seed * 10007 + fold * 101
        self.config, self.input_mode = config, config.data.input_mode
        self.dataset = SaltDataset(fit.images, fit.depths, config.data, fit.masks, build_augment(config.augment))
        self.sampler = None if group.size == 1 else DistributedSampler(
            self.dataset, group.size, group.member, shuffle=True, seed=t.seed + fold, drop_last=True)
        self.loader = DataLoader(self.dataset, batch_size=t.batch_size // group.size, shuffle=self.sampler is None,
                                 sampler=self.sampler, drop_last=True, num_workers=t.num_workers, generator=generator,
                                 worker_init_fn=seed_worker, pin_memory=device.type == "cuda")

    def set_epoch(self, epoch: int) -> None:
        self.input_mode = self.dataset.mode = epoch_input_mode(self.config, epoch)
        self.dataset.epoch_seed = self.seed + epoch
        self.dataset.reseed(self.dataset.epoch_seed + self.member)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def training_batches(config, fit, device: torch.device, group: FoldGroup, fold: int) -> LoaderBatches | DeviceBatches:
    """The fold's training batches, by `train.gpu_augment`, drawing from a generator seeded by seed and fold."""
    generator = torch.Generator().manual_seed(config.train.seed + fold)
    if config.train.gpu_augment:
        return DeviceBatches(fit.images, fit.depths, fit.masks, config, device, generator,
                             shard=(group.member, group.size))
    return LoaderBatches(fit, config, device, generator, group, fold)
