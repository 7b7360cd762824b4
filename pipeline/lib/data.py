"""Reading the competition data in Kaggle's layout, with checks and a cache.

Images come out as uint8 (N, 101, 101) whatever their PNG mode (the files are RGB with three equal
channels); masks as bool (N, 101, 101) from 8-bit or 16-bit PNGs, checked against train.csv's RLE.
Decoded arrays are cached under the work folder, keyed on the file names, sizes and times, so a
second load of all 22,000 images is a couple of memory-mapped reads.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import rle
from .archives import png_names
from .errors import PipelineError
from .geometry import SIZE
from .identity import digest
from .paths import InputLayout, WorkLayout
from .store import atomic_path


@dataclass
class TrainSet:
    ids: np.ndarray  # (N,) str
    images: np.ndarray  # (N, 101, 101) uint8
    masks: np.ndarray  # (N, 101, 101) bool
    depths: np.ndarray  # (N,) float32

    @property
    def coverage(self) -> np.ndarray:
        return self.masks.reshape(len(self.masks), -1).mean(1)

    @cached_property
    def digest(self) -> str:
        """What the data is (ids, pixels, masks, depths), not where it lies or when it was copied."""
        return digest(self.ids, self.images, self.masks, self.depths)


@dataclass
class TestSet:
    ids: np.ndarray
    images: np.ndarray
    depths: np.ndarray

    @cached_property
    def digest(self) -> str:
        return digest(self.ids, self.images, self.depths)


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV with the given columns; a missing file or column is a one-line error."""
    if not path.is_file():
        raise PipelineError(f"{path} is missing; put the Kaggle competition files in the input folder "
                            "(see input/README.md) or pass --input DIR")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise PipelineError(f"{path} is not a readable CSV ({err}); re-download it") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PipelineError(f"{path} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    if frame["id"].duplicated().any():
        raise PipelineError(f"{path} lists id {frame['id'][frame['id'].duplicated()].iloc[0]} twice")
    return frame


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(path: Path, what: str) -> bytes:
    """A PNG file's bytes, once its header says it is SIZE x SIZE: a file declaring another size (a
    decompression bomb among them) is refused before anything is decoded."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"cannot read {what} {path}: missing; re-download it") from None
    except OSError as err:  # permissions, an I/O error
        raise PipelineError(f"cannot read {what} {path} ({err.strerror}); make it readable, or re-download it") from None
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 24:
        raise PipelineError(f"cannot read {what} {path}: not a valid PNG; re-download it")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if (width, height) != (SIZE, SIZE):
        raise PipelineError(f"{path} is {width}x{height} pixels, expected {SIZE}x{SIZE}; replace it with the "
                            "original competition file")
    return data


def decode_png(path: Path, what: str) -> np.ndarray:
    """The PNG's pixels as stored (any bit depth and channels), shape (SIZE, SIZE, C)."""
    array = cv2.imdecode(np.frombuffer(png_bytes(path, what), np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise PipelineError(f"cannot read {what} {path}: not a valid PNG; re-download it")
    return array.reshape(SIZE, SIZE, -1)


def read_image(path: Path) -> np.ndarray:
    """One image as uint8 (101, 101) by a rule that keeps its values: gray as it is; RGB or RGBA by their
    colour channels (equal in the competition's files; otherwise OpenCV's luma), alpha dropped; 8-bit values
    kept; 16-bit full range scaled to 8 bits (value / 257), 16-bit whose values stop at 255 (8-bit values
    stored wide) kept as they are. Any other sample type is refused, naming the file."""
    pixels = decode_png(path, "image")
    if pixels.dtype == np.uint16:
        pixels = (pixels if pixels.max() <= 255 else (pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if pixels.dtype != np.uint8:
        raise PipelineError(f"image {path} has {pixels.dtype} samples; the competition's images are 8-bit "
                            "PNGs: replace it with the original file")
    colour = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., :1]
    if colour.shape[2] == 1 or (colour == colour[..., :1]).all():
        return np.ascontiguousarray(colour[..., 0])
    return cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_BGR2GRAY)


def read_mask(path: Path) -> np.ndarray:
    """One mask as bool (101, 101): any non-zero sample is salt (masks are 0/255 8-bit or 0/65535 16-bit)."""
    return (decode_png(path, "mask") > 0).any(axis=2)


def _folder_ids(folder: Path) -> set[str]:
    if not folder.is_dir():
        raise PipelineError(f"folder {folder} is missing; the input folder must hold Kaggle's layout "
                            "(train/images, train/masks, test/images, or train.zip and test.zip)")
    return {name[:-4] for name in png_names(folder)}



def _check_ids(ids: list[str], folder: Path, listed_in: Path) -> None:
    """Every listed id has a PNG in `folder`, and every PNG there is listed."""
    found = _folder_ids(folder)
    missing = [i for i in ids if i not in found]
    if missing:
        raise PipelineError(f"{len(missing)} id(s) in {listed_in.name} have no image in {folder} "
                            f"(first: {missing[0]}.png); restore the files or use the matching CSV")
    extra = sorted(found.difference(ids))
    if extra:
        raise PipelineError(f"{len(extra)} image(s) in {folder} are not listed in {listed_in.name} "
                            f"(first: {extra[0]}.png); remove them or use the matching CSV")


def _cache_key(kind: str, paths: list[Path]) -> str:
    digest = hashlib.sha1(kind.encode())
    for path in paths:
        st = path.stat()
        digest.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _read_all(paths: list[Path], reader, desc: str) -> np.ndarray:
    # PNG decoding releases the GIL, so threads use every core
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        items = list(tqdm(pool.map(reader, paths), total=len(paths), desc=desc,
                          leave=False, disable=len(paths) < 500))
    return np.stack(items) if items else np.zeros((0, SIZE, SIZE), np.uint8)


def load_stack(paths: list[Path], reader, kind: str, cache_dir: Path | None) -> np.ndarray:
    """Read many PNGs into one array, through the cache when `cache_dir` is given."""
    if cache_dir is None:
        return _read_all(paths, reader, f"reading {kind}")
    cache = cache_dir / f"{kind}-{_cache_key(kind, paths)}.npy"
    if cache.exists():
        try:
            return np.load(cache)
        except (OSError, ValueError):
            cache.unlink()  # a damaged cache is rebuilt, never trusted
    array = _read_all(paths, reader, f"reading {kind}")
    with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    return array


def _depths(layout: InputLayout, ids) -> np.ndarray:
    frame = read_csv(layout.depths_csv, ["id", "z"])
    z = dict(zip(frame["id"], frame["z"]))
    missing = [i for i in ids if i not in z]
    if missing:
        raise PipelineError(f"{len(missing)} id(s) have no depth in {layout.depths_csv} (first: {missing[0]})")
    try:
        depths = np.array([float(z[i]) for i in ids], dtype=np.float64)
    except ValueError as err:
        raise PipelineError(f"{layout.depths_csv} has a non-numeric depth ({err})") from None
    bad = np.flatnonzero(~np.isfinite(depths) | (np.abs(depths) > np.finfo(np.float32).max))
    if len(bad):
        raise PipelineError(f"{layout.depths_csv} gives id {ids[bad[0]]} the depth {z[ids[bad[0]]]!r}; depths must "
                            f"be finite numbers ({len(bad)} are not): re-download it")
    return depths.astype(np.float32)


def _check_input_root(layout: InputLayout) -> None:
    if not layout.root.is_dir():
        raise PipelineError(f"input folder {layout.root} does not exist; download the competition data "
                            "into input/ (see input/README.md), pass --input DIR or set TGS_INPUT")


def decode_train_csv(layout: InputLayout, frame: pd.DataFrame) -> np.ndarray:
    """All masks of train.csv; a malformed RLE is an error naming its id."""
    masks = np.zeros((len(frame), SIZE, SIZE), bool)
    for n, (image_id, code) in enumerate(zip(frame["id"], frame["rle_mask"])):
        try:
            masks[n] = rle.decode(code, (SIZE, SIZE))
        except ValueError as err:
            raise PipelineError(f"{layout.train_csv}: malformed rle_mask for id {image_id}: {err}") from None
    return masks


def load_train(layout: InputLayout, work: WorkLayout | None = None) -> TrainSet:
    """The labelled set, ordered as train.csv; masks must agree with train.csv's RLE."""
    _check_input_root(layout)
    frame = read_csv(layout.train_csv, ["id", "rle_mask"])
    ids = list(frame["id"])
    _check_ids(ids, layout.train_images, layout.train_csv)
    _check_ids(ids, layout.train_masks, layout.train_csv)
    cache = work.cache_dir if work else None
    images = load_stack([layout.train_images / f"{i}.png" for i in ids], read_image, "train-images", cache)
    masks = load_stack([layout.train_masks / f"{i}.png" for i in ids], read_mask, "train-masks", cache)
    expected = decode_train_csv(layout, frame)
    bad = np.flatnonzero((expected != masks).reshape(len(ids), -1).any(1))
    if len(bad):
        raise PipelineError(f"mask {layout.train_masks / (ids[bad[0]] + '.png')} differs from its rle_mask in "
                            f"{layout.train_csv} ({len(bad)} id(s) differ); the two files come from different "
                            "downloads, re-download both")
    return TrainSet(np.array(ids), images, masks, _depths(layout, ids))


def load_test(layout: InputLayout, work: WorkLayout | None = None) -> TestSet:
    """The unlabelled set, ordered as sample_submission.csv."""
    _check_input_root(layout)
    frame = read_csv(layout.sample_submission_csv, ["id", "rle_mask"])
    ids = list(frame["id"])
    _check_ids(ids, layout.test_images, layout.sample_submission_csv)
    cache = work.cache_dir if work else None
    images = load_stack([layout.test_images / f"{i}.png" for i in ids], read_image, "test-images", cache)
    return TestSet(np.array(ids), images, _depths(layout, ids))
