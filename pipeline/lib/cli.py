"""Arguments every stage shares: where the data is and where outputs go."""
from __future__ import annotations

import argparse

from . import paths
from .archives import unpacked
from .lock import lock_workdir


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input", default=None,
                   help=f"Kaggle data folder (default: ${paths.INPUT_ENV} or input/)")
    p.add_argument("--workdir", default=None,
                   help=f"where folds/, experiments/, submissions/ go (default: ${paths.WORKDIR_ENV} or the repo)")
    return p


def layouts(args: argparse.Namespace, lock: bool = True,
            n_folds: int = paths.N_FOLDS, split: str = "coverage") -> tuple[paths.InputLayout, paths.WorkLayout]:
    """The input and work folders (whose split has `n_folds` folds of kind `split`: the config's data.n_folds
    and data.split); unless `lock`
    is off (read-only stages), the work folder is locked for this run: one run at a time. Data that came as
    train.zip / test.zip is read from its extraction in the work folder's cache."""
    work = paths.WorkLayout(paths.work_dir(args.workdir), n_folds, split)
    if lock:
        lock_workdir(work.root)
    return unpacked(paths.InputLayout(paths.input_dir(args.input)), work.unpacked_dir), work
