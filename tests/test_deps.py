"""The installer: what it installs (missing or too old), from where (PyPI or an offline wheels folder)."""
import importlib.metadata
import subprocess

import pytest

from pipeline import deps


@pytest.mark.parametrize("text, parts", [("2.0.8", (2, 0, 8)), ("2.14.1+cu130", (2, 14, 1)), ("1.4rc1", (1, 4)),
                                         ("0.6.0", (0, 6, 0))])
def test_release_parts(text, parts):
    assert deps.release(text) == parts


def test_an_installed_version_below_the_floor_is_named(monkeypatch):
    versions = {"albumentations": "1.4.18", "pandas": "2.2.0"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])
    pairs = [("albumentations>=2.0", "albumentations"), ("pandas>=2.0", "pandas"), ("torchvision", "torchvision")]
    assert deps.too_old(pairs) == [("albumentations>=2.0", "1.4.18")]


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
