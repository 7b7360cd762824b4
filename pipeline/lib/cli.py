"""What every stage shares: its arguments (where the data is and where outputs go) and its lifecycle
(`run_stage`: one-line errors, the lock released, subnormals flushed)."""
from __future__ import annotations

import argparse
import sys

from . import paths
from .archives import unpacked
from .errors import PipelineError, os_error
from .lock import lock_workdir, release_all


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


def run_stage(main, argv=None) -> None:
    """Run a stage's `main(argv)`; an expected failure prints `error: ...` and exits with status 2. Subnormal
    floats count as zero in a stage that loaded torch at import (one that runs models: `runtime.flush_denormals`)."""
    if "torch" in sys.modules:  # a stage that runs no model (status) does not load torch to set it
        from .runtime import flush_denormals
        flush_denormals()
    try:
        main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # one the stage did not turn into words itself
        print(f"error: {os_error(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        release_all()
