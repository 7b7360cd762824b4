"""Network inputs: the gray image on the canvas plus optional depth and row-coordinate planes."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .geometry import SIZE, margins, to_canvas

GRAY_MEAN, GRAY_STD = 0.47, 0.16  # of the training images, as fractions of 255
DEPTH_MEAN, DEPTH_STD = 500.0, 250.0


def row_coordinate(mode: str) -> np.ndarray:
    """Each canvas row's position in the original image, scaled to [-1, 1] over rows 0..100."""
    inner, before, after = margins(mode)
    rows = (np.arange(before + inner + after) - before) * (SIZE - 1) / (inner - 1)
    return (rows / (SIZE - 1) * 2 - 1).astype(np.float32)


def make_input(image: np.ndarray, depth: float, mode: str, channels: list[str]) -> np.ndarray:
    """uint8 (101, 101) -> float32 (C, S, S)."""
    gray = to_canvas((image.astype(np.float32) / 255 - GRAY_MEAN) / GRAY_STD, mode)
    planes = [gray]
    if "depth" in channels:
        planes.append(np.full_like(gray, (depth - DEPTH_MEAN) / DEPTH_STD))
    if "coord" in channels:
        planes.append(np.repeat(row_coordinate(mode)[:, None], gray.shape[1], axis=1))
    return np.stack(planes)


def is_blank(images: np.ndarray) -> np.ndarray:
    """Images that are one constant value (they exist in the data, always with empty masks)."""
    flat = images.reshape(len(images), -1)
    return flat.min(1) == flat.max(1)


class SaltDataset(Dataset):
    """In-memory images (and masks), augmented together, returned as (input, target 1x101x101)."""

    def __init__(self, images, depths, data, masks=None, augment=None):
        """`data`: the config's data section (input mode and channels)."""
        self.images, self.depths, self.masks = images, depths, masks
        self.mode = data.input_mode
        self.channels = data.channels
        self.augment = augment
        self.epoch_seed = 0

    def __len__(self) -> int:
        return len(self.images)

    def reseed(self, seed: int) -> None:
        if self.augment is not None:
            self.augment.set_random_seed(seed)

    def __getitem__(self, i):
        image = self.images[i]
        mask = self.masks[i].astype(np.uint8) if self.masks is not None else np.zeros((SIZE, SIZE), np.uint8)
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = make_input(image, float(self.depths[i]), self.mode, self.channels)
        return torch.from_numpy(x), torch.from_numpy(mask[None].astype(np.float32))


def seed_worker(worker_id: int) -> None:
    """Each loader worker draws its own, reproducible augmentations."""
    info = get_worker_info()
    info.dataset.reseed(info.dataset.epoch_seed * 1000 + worker_id)
