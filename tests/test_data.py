import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import folds
from pipeline.lib.data import load_test, load_train, read_image, read_mask
from pipeline.lib.cli import run_stage
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import REPO, InputLayout, WorkLayout


def test_images_and_masks_in_every_png_mode(tmp_path):
    gray = np.arange(101 * 101, dtype=np.uint32).reshape(101, 101) % 251
    gray = gray.astype(np.uint8)
    for name, stored in {"gray": gray, "rgb": np.repeat(gray[..., None], 3, 2),
                         "rgba": np.dstack([gray, gray, gray, np.full_like(gray, 255)])}.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), stored)
        assert (read_image(tmp_path / f"{name}.png") == gray).all(), name
    mask = np.zeros((101, 101), bool)
    mask[10:20, 30:50] = True
    cv2.imwrite(str(tmp_path / "m16.png"), mask.astype(np.uint16) * 65535)
    cv2.imwrite(str(tmp_path / "m8.png"), mask.astype(np.uint8) * 255)
    assert (read_mask(tmp_path / "m16.png") == mask).all()
    assert (read_mask(tmp_path / "m8.png") == mask).all()


@pytest.mark.parametrize("mode", ["gray 16-bit full range", "gray 16-bit 0-255", "rgb 16-bit", "gray+alpha"])
def test_images_of_other_depths_keep_their_values(tmp_path, mode):
    """A 16-bit image whose values stop at 255 once read as all black (IMREAD_GRAYSCALE scaled it down)."""
    gray = (np.arange(101 * 101).reshape(101, 101) % 251).astype(np.uint8)
    stored = {"gray 16-bit full range": gray.astype(np.uint16) * 257, "gray 16-bit 0-255": gray.astype(np.uint16),
              "rgb 16-bit": np.repeat(gray[..., None].astype(np.uint16) * 257, 3, 2),
              "gray+alpha": np.dstack([gray, np.full_like(gray, 255)])}[mode]
    path = tmp_path / "image.png"
    if mode == "gray+alpha":  # OpenCV writes no two-channel PNG; Pillow does (mode LA)
        Image.fromarray(stored, "LA").save(path)
    else:
        assert cv2.imwrite(str(path), stored)
    assert (read_image(path) == gray).all()


def test_colour_images_are_read_by_their_luma(tmp_path):
    colour = np.zeros((101, 101, 3), np.uint8)
    colour[..., 2] = 200  # red, in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), colour)
    assert (read_image(tmp_path / "red.png") == cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)).all()


def test_a_png_declaring_a_huge_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    cv2.imwrite(str(path), np.zeros((101, 101), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR width and height
    path.write_bytes(bytes(data))
    for read in (read_image, read_mask):
        with pytest.raises(PipelineError, match=r"bomb.png is 60000x60000 pixels, expected 101x101"):
            read(path)


def test_load_and_cache(demo_input, tmp_path):
    work = WorkLayout(tmp_path)
    first = load_train(InputLayout(demo_input), work)
    assert first.images.shape == (60, 101, 101) and first.images.dtype == np.uint8
    assert first.masks.dtype == bool and 0 < first.coverage.mean() < 1
    assert len(list(work.cache_dir.glob("*.npy"))) == 2
    again = load_train(InputLayout(demo_input), work)
    assert (again.images == first.images).all() and (again.masks == first.masks).all()
    test = load_test(InputLayout(demo_input), work)
    assert test.images.shape == (30, 101, 101) and len(test.depths) == 30


def first_id(root):
    return pd.read_csv(root / "train.csv", dtype=str)["id"][0]


def missing_folder(root):
    return root / "nothing-here"


def no_train_csv(root):
    (root / "train.csv").unlink()
    return root


def image_removed(root):
    (root / "train" / "images" / f"{first_id(root)}.png").unlink()
    return root


def image_unlisted(root):
    cv2.imwrite(str(root / "train" / "images" / "stray.png"), np.zeros((101, 101), np.uint8))
    cv2.imwrite(str(root / "train" / "masks" / "stray.png"), np.zeros((101, 101), np.uint8))
    return root


def image_corrupt(root):
    (root / "train" / "images" / f"{first_id(root)}.png").write_bytes(b"\x89PNG not really")
    return root


def image_wrong_size(root):
    cv2.imwrite(str(root / "train" / "images" / f"{first_id(root)}.png"), np.zeros((128, 128), np.uint8))
    return root


def rle_malformed(root):
    frame = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "rle_mask"] = "1 2 3"
    frame.to_csv(root / "train.csv", index=False)
    return root


def mask_mismatch(root):
    frame = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "rle_mask"] = "1 5" if frame.loc[0, "rle_mask"] != "1 5" else "1 6"
    frame.to_csv(root / "train.csv", index=False)
    return root


def rle_overflowing(code):
    def damage(root):
        frame = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
        frame.loc[0, "rle_mask"] = code
        frame.to_csv(root / "train.csv", index=False)
        return root
    return damage


def depth_of(value):
    def damage(root):
        frame = pd.read_csv(root / "depths.csv", dtype=str)
        frame.loc[frame["id"] == first_id(root), "z"] = value
        frame.to_csv(root / "depths.csv", index=False)
        return root
    return damage


def no_depth(root):
    frame = pd.read_csv(root / "depths.csv", dtype=str)
    frame[frame["id"] != first_id(root)].to_csv(root / "depths.csv", index=False)
    return root


@pytest.mark.parametrize("damage, expected", [
    (missing_folder, "does not exist"),
    (no_train_csv, "train.csv is missing"),
    (image_removed, "have no image"),
    (image_unlisted, "stray.png"),
    (image_corrupt, "not a valid PNG"),
    (image_wrong_size, "128x128 pixels, expected 101x101"),
    (rle_malformed, "malformed rle_mask for id"),
    (mask_mismatch, "differs from its rle_mask"),
    (no_depth, "no depth"),
    (rle_overflowing("1 99999999999999999999999"), "malformed rle_mask for id"),  # past 64 bits
    (rle_overflowing("9223372036854775000 100"), "malformed rle_mask for id"),  # a start whose end overflows
    (depth_of("nan"), "the depth 'nan'; depths must be finite"),
    (depth_of("inf"), "the depth 'inf'; depths must be finite"),
    (depth_of("1e300"), "the depth '1e300'; depths must be finite"),
])
def test_bad_input_is_one_line_and_writes_nothing(own_demo, tmp_path, capsys, damage, expected):
    root = damage(own_demo)
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as exit_info:
        run_stage(folds.main, ["--input", str(root), "--workdir", str(work)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.startswith("error: ") and len(err.splitlines()) == 1
    assert not (work / "folds").exists() or not any((work / "folds").iterdir())


@pytest.mark.slow
def test_command_line_exit_code_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.folds", "--input", "/no/such/dir",
                             "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: input folder /no/such/dir does not exist")
    assert "Traceback" not in result.stderr
