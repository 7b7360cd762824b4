"""The training set held on the device, batched and augmented there (train.gpu_augment).

A small dataset (3,200 images of 101x101) fits in a few MB of GPU memory; drawing batches from it and
flipping, warping and re-lighting them with a handful of batched tensor ops keeps a fast GPU fed without
CPU loader workers. Augmentations run on the 101x101 image and mask, before the canvas padding, exactly
as the albumentations path does; random numbers come from the loader's CPU generator, so a run resumes
reproducibly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .augment import enabled
from .dataset import DEPTH_MEAN, DEPTH_STD, GRAY_MEAN, GRAY_STD, row_coordinate
from .geometry import epoch_input_mode, margins


def chance(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def uniform(low: float, high: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def affine_theta(n: int, params, gen: torch.Generator) -> torch.Tensor:
    """Per-sample 2x3 matrices (output -> input sampling) for shift, scale and rotation; identity when not drawn."""
    on = chance(params.p, n, gen).float()
    angle = uniform(-params.rotate, params.rotate, n, gen) * math.pi / 180 * on
    scale = 1 + uniform(-params.scale, params.scale, n, gen) * on
    shift = uniform(-params.shift, params.shift, 2 * n, gen).view(n, 2) * 2 * on[:, None]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def reflect_101(grid: torch.Tensor) -> torch.Tensor:
    """Sampling coordinates (N, H, W, 2; x then y; align_corners=False) folded back into the image the way
    OpenCV's BORDER_REFLECT_101 does, as the CPU path (albumentations) and the canvas padding reflect: the
    edge pixel is the mirror, not repeated (torch's own 'reflection' padding repeats it)."""
    height, width = grid.shape[1:3]
    size = torch.tensor([width, height], dtype=grid.dtype, device=grid.device)
    pixels = ((grid + 1) * size - 1) / 2  # pixel-centre coordinates
    period = 2 * (size - 1)
    pixels = torch.remainder(pixels, period)
    pixels = torch.where(pixels > size - 1, period - pixels, pixels)
    return (2 * pixels + 1) / size - 1


def augment_batch(x: torch.Tensor, y: torch.Tensor, augment, gen: torch.Generator):
    """x: raw intensities in [0, 1] (N, 1, 101, 101); y: masks (N, 1, 101, 101); `augment`: the config section."""
    n, device = len(x), x.device
    on = enabled(augment)
    if "hflip" in on:
        flip = chance(on["hflip"].p, n, gen).to(device)[:, None, None, None]
        x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
    if "affine" in on:
        params = on["affine"]
        grid = reflect_101(F.affine_grid(affine_theta(n, params, gen).to(device), list(x.shape), align_corners=False))
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        y = F.grid_sample(y, grid, mode="nearest", padding_mode="border", align_corners=False)
    if "brightness_contrast" in on:
        params = on["brightness_contrast"]
        drawn = chance(params.p, n, gen).float()
        gain = 1 + uniform(-params.contrast, params.contrast, n, gen) * drawn
        offset = uniform(-params.brightness, params.brightness, n, gen) * drawn
        x = (x * gain.to(device)[:, None, None, None] + offset.to(device)[:, None, None, None]).clamp(0, 1)
    return x, y


def to_canvas_batch(x: torch.Tensor, depths: torch.Tensor, mode: str, channels: list[str]) -> torch.Tensor:
    """Raw (N, 1, 101, 101) -> normalised network input (N, C, S, S), as dataset.make_input does per image."""
    inner, before, after = margins(mode)
    gray = (x - GRAY_MEAN) / GRAY_STD
    if inner != x.shape[-1]:
        gray = F.interpolate(gray, size=(inner, inner), mode="bilinear", align_corners=False)
    gray = F.pad(gray, (before, after, before, after), mode="reflect")
    planes = [gray]
    if "depth" in channels:
        planes.append(((depths - DEPTH_MEAN) / DEPTH_STD)[:, None, None, None].expand_as(gray))
    if "coord" in channels:
        rows = torch.from_numpy(row_coordinate(mode)).to(x.device)
        planes.append(rows[None, None, :, None].expand_as(gray))
    return torch.cat(planes, 1)


class DeviceBatches:
    """Iterable of augmented (input, mask) batches drawn from device-resident arrays; drops the last partial batch.
    `shard=(k, n)`: the k-th of n equal shares of every batch (processes of one DDP group draw the same order
    from equally seeded generators)."""

    def __init__(self, images: np.ndarray, depths: np.ndarray, masks: np.ndarray, config,
                 device: torch.device, generator: torch.Generator, shard: tuple[int, int] = (0, 1)):
        self.x = torch.from_numpy(images).to(device).float().div_(255)[:, None]
        self.y = torch.from_numpy(masks).to(device).float()[:, None]
        self.depths = torch.from_numpy(np.asarray(depths, np.float32)).to(device)
        self.augment, self.generator = config.augment, generator
        self.batch, self.shard, self.config, self.input_mode = config.train.batch_size, shard, config, config.data.input_mode

    def set_epoch(self, epoch: int) -> None:
        """The epoch's canvas; the draws need nothing: they come from `generator`, kept by the resume checkpoint."""
        self.input_mode = epoch_input_mode(self.config, epoch)

    def __len__(self) -> int:
        return len(self.x) // self.batch

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        for step in range(len(self)):
            member, members = self.shard
            idx = order[step * self.batch:(step + 1) * self.batch][member::members]
            x, y = augment_batch(self.x[idx], self.y[idx], self.augment, self.generator)
            yield to_canvas_batch(x, self.depths[idx], self.input_mode, self.config.data.channels), y
