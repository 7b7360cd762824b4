"""The installed command: `tgs-salt STAGE [args...]` runs `python -m pipeline.STAGE [args...]`.

    tgs-salt run --demo                # the whole pipeline (as bash run.sh)
    tgs-salt train --config cpu --fold 0
"""
from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "run": "the whole pipeline (mosaic -> folds -> train -> predict -> tune -> submit)",
    "mosaic": "put the train and test tiles back into their seismic sections",
    "folds": "write the k-fold split (stratified by coverage, grouped by mosaic on request)",
    "train": "train folds of an experiment",
    "predict": "out-of-fold and test probabilities (flip TTA, folds averaged)",
    "tune": "threshold, min area and head cut on out-of-fold predictions",
    "submit": "the submission CSV (or an ensemble of experiments)",
    "status": "what is up to date, stale or missing",
    "leaderboard": "every experiment side by side: leaderboard.csv/.md and report.html",
    "pseudo": "pseudo-labels from an experiment's test predictions",
    "ablate": "train and score several configs on the same folds",
    "bench": "speed of every stage",
    "bundle": "the Kaggle upload: wheels, weights and a kernel",
    "demo": "a generated dataset in Kaggle's layout",
    "deps": "install what the active Python lacks",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return "usage: tgs-salt COMMAND [args...]\n\ncommands:\n" + "\n".join(
        f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()) + "\n\n`tgs-salt COMMAND --help` for its flags"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] not in COMMANDS:
        sys.exit(f"error: unknown command '{argv[0]}'; commands: {', '.join(COMMANDS)}")
    sys.argv = [f"tgs-salt {argv[0]}", *argv[1:]]
    runpy.run_module(f"pipeline.{argv[0]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
