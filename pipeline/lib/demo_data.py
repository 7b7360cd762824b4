"""A small synthetic dataset in Kaggle's layout, for the demo run, the tests and the benchmark.

Images look like seismic sections (dipping, warped reflector layers) with salt bodies whose inside
is a weak, chaotic texture; coverage ranges from empty (about 39%, as in the real data) to nearly
full, a few images are one constant value, images are stored as RGB with three equal channels, and
masks use both of Kaggle's encodings (8-bit all-zero when empty, 16-bit 0/65535 otherwise).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from . import rle
from .errors import PipelineError
from .geometry import SIZE
from .paths import InputLayout
from .store import current_umask

EMPTY_FRACTION = 0.39
CONSTANT_FRACTION = 0.03


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field of correlation length ~sigma pixels."""
    field = cv2.GaussianBlur(rng.standard_normal((SIZE, SIZE)).astype(np.float32), (0, 0), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def layered_texture(rng: np.random.Generator) -> np.ndarray:
    """Sedimentary layers: sinusoidal reflectors along a dipping, warped depth coordinate."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    depth = y + rng.uniform(-0.4, 0.4) * x + rng.uniform(2, 6) * smooth_noise(rng, 15)
    period = rng.uniform(5, 12)
    layers = np.sin(2 * np.pi * depth / period) + 0.5 * np.sin(2 * np.pi * depth / (period * 2.7) + 1.0)
    return layers + 0.25 * rng.standard_normal((SIZE, SIZE)).astype(np.float32)


def salt_mask(rng: np.random.Generator, coverage: float) -> np.ndarray:
    """A smooth body covering about `coverage` of the image, growing from a random side."""
    if coverage <= 0:
        return np.zeros((SIZE, SIZE), bool)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    side = rng.integers(4)
    ramp = [y, 1 - y, x, 1 - x][side]  # salt rises from the bottom or intrudes from a side
    field = 2.5 * ramp + smooth_noise(rng, rng.uniform(6, 14))
    cut = np.quantile(field, 1 - coverage)
    mask = field > cut
    return mask if mask.any() else field >= field.max()


def synth_image(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    layers = layered_texture(rng)
    salt = 0.35 * smooth_noise(rng, 1.5) + rng.uniform(-0.3, 0.3)
    image = np.where(mask, salt, layers)
    edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    image = image + 1.2 * edge  # salt flanks show as a strong reflector
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    gain, offset = rng.uniform(25, 45), rng.uniform(90, 160)
    return np.clip(offset + gain * image, 0, 255).astype(np.uint8)


def sample_coverage(rng: np.random.Generator) -> float:
    if rng.random() < EMPTY_FRACTION:
        return 0.0
    if rng.random() < 0.1:
        return float(rng.uniform(0.95, 0.995))  # nearly full
    return float(rng.uniform(0.005, 0.95))


def synth_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < CONSTANT_FRACTION:  # blank images exist in the real data, always with empty masks
        return np.full((SIZE, SIZE), rng.integers(0, 256), np.uint8), np.zeros((SIZE, SIZE), bool)
    mask = salt_mask(rng, sample_coverage(rng))
    return synth_image(rng, mask), mask


def write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise PipelineError(f"could not write {path}")


def write_dataset(out: Path, n_train: int, n_test: int, seed: int) -> None:
    """Write a complete dataset in Kaggle's layout into `out` (a new or empty folder)."""
    rng = np.random.default_rng(seed)
    layout = InputLayout(out)
    for folder in (layout.train_images, layout.train_masks, layout.test_images):
        folder.mkdir(parents=True)
    ids = [f"{n:010x}" for n in rng.choice(16 ** 10, n_train + n_test, replace=False)]
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    codes = []
    for image_id in train_ids:
        image, mask = synth_sample(rng)
        write_png(layout.train_images / f"{image_id}.png", np.repeat(image[..., None], 3, axis=2))
        stored = mask.astype(np.uint16) * 65535 if mask.any() else np.zeros((SIZE, SIZE), np.uint8)
        write_png(layout.train_masks / f"{image_id}.png", stored)
        codes.append(rle.encode(mask))
    for image_id in test_ids:
        image, _ = synth_sample(rng)
        write_png(layout.test_images / f"{image_id}.png", np.repeat(image[..., None], 3, axis=2))
    pd.DataFrame({"id": train_ids, "rle_mask": codes}).to_csv(layout.train_csv, index=False)
    depths = rng.integers(50, 960, len(ids))
    pd.DataFrame({"id": ids, "z": depths}).to_csv(layout.depths_csv, index=False)
    pd.DataFrame({"id": test_ids, "rle_mask": "1 1"}).to_csv(layout.sample_submission_csv, index=False)


def make_demo(out: Path, n_train: int = 400, n_test: int = 200, seed: int = 0, force: bool = False) -> bool:
    """Generate the dataset unless it already exists; returns whether it was written. Safe when several
    processes generate the same folder at once: each writes its own temporary folder, one rename wins."""
    out = Path(out)
    if out.exists() and not force:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        write_dataset(tmp, n_train, n_test, seed)
        if force:
            shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same folder first
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
