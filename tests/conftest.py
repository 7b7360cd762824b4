from pathlib import Path

import pytest

from pipeline.lib.demo_data import make_demo
from pipeline.lib.paths import REPO

SHARED = REPO.parent / "shared" / "tgs-salt"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/tgs-salt is not present")


@pytest.fixture(scope="session")
def demo_input(tmp_path_factory) -> Path:
    """A small generated dataset in Kaggle's layout, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("demo") / "input"
    make_demo(out, n_train=60, n_test=30, seed=1)
    return out


@pytest.fixture
def own_demo(tmp_path) -> Path:
    """A generated dataset a test may damage."""
    out = tmp_path / "input"
    make_demo(out, n_train=30, n_test=10, seed=2)
    return out
