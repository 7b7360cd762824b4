"""Stage: split the labelled images into k folds, stratified by mask coverage.

    python -m pipeline.folds [--input DIR] [--n-folds 5] [--seed 42] [--force]

Writes folds/folds.csv (id, fold, coverage, coverage_class) once; later stages reuse it, and it is
rewritten only with --force, so every experiment is validated on the same split.
"""
from __future__ import annotations

from .lib import cli
from .lib.data import load_train
from .lib.errors import run_stage
from .lib.folds import fold_summary, make_folds, read_folds, write_folds


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--force", action="store_true", help="rewrite folds/folds.csv if it exists")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args)
    train = load_train(layout, work)
    if work.folds_csv.exists() and not args.force:
        read_folds(work, train.ids)  # refuse a stale split made for other data
        print(f"{work.folds_csv} exists; reusing it (pass --force to rewrite)")
        return
    frame = make_folds(train.ids, train.coverage, args.n_folds, args.seed)
    write_folds(work, frame)
    print(f"wrote {work.folds_csv}")
    print(fold_summary(frame).to_string())


if __name__ == "__main__":
    run_stage(main)
