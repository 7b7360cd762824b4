#!/usr/bin/env bash
# The whole pipeline: folds -> train (all folds) -> predict -> tune -> submit; a thin call of `python -m
# pipeline.run` (the same as the installed command `tgs-salt run`, or `pipeline.run.run([...])` in a notebook).
#
#   bash run.sh --demo                          # generated demo data, tiny model, a few minutes on a CPU
#   bash run.sh [--config FILE] [--input DIR]   # default: default.yaml (GPU) or cpu-long.yaml (no GPU)
#                                               # (no data in input/ and no --input: the demo)
#   options: --workdir DIR   where folds/, experiments/, submissions/ go (default: the repo; $TGS_WORKDIR)
#            --only STAGE    run just one stage          --from STAGE   start at a stage
#            --force         redo stages whose outputs are up to date (retrains folds; never re-splits)
#            --kaggle        kernel mode (automatic where /kaggle/working exists): also writes
#                            /kaggle/working/submission.csv and drops finished folds' last.pt (--keep-last)
#   anything after `--` is passed to the stages as key=value config overrides; overrides that change
#   training make a new experiment, named <config>-<digest> (printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, from whatever folder it is called
exec "${PYTHON:-python3}" -m pipeline.run "$@"
