import os
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.lib.demo_data import make_demo
from pipeline.lib.paths import REPO

SHARED = REPO.parent / "shared" / "tgs-salt"

if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n N`: each worker (and what it starts) keeps to one thread, so
    os.environ["OMP_NUM_THREADS"] = "1"   # N workers on N cores never spin OpenMP threads against each other
    torch.set_num_threads(1)
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/tgs-salt is not present")


@pytest.fixture(scope="session")
def demo_input(tmp_path_factory) -> Path:
    """A small generated dataset in Kaggle's layout, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("demo") / "input"
    make_demo(out, n_train=60, n_test=30, seed=1)
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """Input and work folders after one complete tiny run (3 folds); tests copy them before changing anything."""
    from pipeline import folds
    from tests.tiny_run import stages
    root = tmp_path_factory.mktemp("trained")
    make_demo(root / "input", n_train=36, n_test=12, seed=4)
    folds.main(["--input", str(root / "input"), "--workdir", str(root / "work"), "--n-folds", "3"])
    stages(root / "input", root / "work")
    return root


@pytest.fixture
def copy(trained, tmp_path) -> Path:
    """A copy of the tiny run's folders, for a test to change."""
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def work(demo_input, tmp_path):
    """A work folder with demo.yaml's split (3 folds) of the shared generated data."""
    from pipeline import folds
    from pipeline.lib.paths import WorkLayout
    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "3"])
    return WorkLayout(tmp_path, n_folds=3)  # demo.yaml's split


@pytest.fixture
def own_demo(tmp_path) -> Path:
    """A generated dataset a test may damage."""
    out = tmp_path / "input"
    make_demo(out, n_train=30, n_test=10, seed=2)
    return out


CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # Kaggle's image's torch: no sm_60
DEVICES = {"Tesla P100-PCIE-16GB": (6, 0), "Tesla T4": (7, 5), "NVIDIA H100 80GB HBM3": (9, 0)}


@pytest.fixture
def gpu_machine(monkeypatch):
    """Mock torch.cuda as a machine with the named GPUs under a torch built for `archs`."""
    def make(names, archs=CU128):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(archs))
        number = lambda index: getattr(index, "index", index) or 0  # noqa: E731 (an index or a torch.device)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: DEVICES[names[number(index)]])
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: names[number(index)])
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    return make
