"""Synthetic seismic sections cut into 101x101 tiles, for the mosaic tests: layered, bent reflectors
with noise, so edge rows continue across a cut as they do in the competition's sections."""
import cv2
import numpy as np

SIZE = 101


def section(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    height, width = rows * SIZE, cols * SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    bend = 25 * np.sin(x / 170 + rng.uniform(0, 6)) + 10 * np.sin(x / 53 + rng.uniform(0, 6))
    image = sum(rng.uniform(0.5, 1) * np.sin((y + bend) * rng.uniform(0.05, 0.4) + rng.uniform(0, 6)) for _ in range(6))
    image = image + cv2.GaussianBlur(rng.normal(0, 1.5, (height, width)).astype(np.float32), (0, 0), 2)
    return ((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)


def cut(image: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The tiles of a section, row by row, and the (row, col) each came from."""
    rows, cols = image.shape[0] // SIZE, image.shape[1] // SIZE
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    return np.stack([image[r * SIZE:(r + 1) * SIZE, c * SIZE:(c + 1) * SIZE] for r, c in cells]), cells
