import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import folds
from pipeline.lib.data import load_test, load_train, read_image, read_mask
from pipeline.lib.errors import run_stage
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


def test_command_line_exit_code_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.folds", "--input", "/no/such/dir",
                             "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: input folder /no/such/dir does not exist")
    assert "Traceback" not in result.stderr
