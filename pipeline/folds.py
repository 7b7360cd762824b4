"""Stage: split the labelled images into k folds, stratified by mask coverage.

    python -m pipeline.folds [--input DIR] [--n-folds 5] [--split coverage|mosaic] [--seed 42] [--force]
    python -m pipeline.folds --config FILE [key=value ...]      # k and the kind from data.n_folds, data.split

Writes folds/folds.csv (id, fold, coverage, coverage_class) once; later stages reuse it, and it is
rewritten only with --force, so every experiment is validated on the same split. A split of K folds other
than 5 (a config's data.n_folds, which run.sh passes through --config) goes to folds/folds-K.csv beside it.
`--split mosaic` (data.split: mosaic) keeps each mosaic of mosaic/mosaic.csv wholly in one fold, so no
validation tile has a training neighbour whose mask the model learnt: folds/folds-mosaic.csv.
"""
from __future__ import annotations

from .lib import cli
from .lib.config import load_config
from .lib.data import load_train
from .lib.errors import PipelineError
from .lib.folds import fold_summary, make_folds, read_folds, write_folds
from .lib.mosaic import read_mosaics
from .lib.paths import N_FOLDS, SPLITS
from .lib.records import mosaic_made_from


def fold_kind(args) -> tuple[int, str]:
    """(k, kind): --n-folds and --split, else the config's data.n_folds and data.split, else 5 by coverage."""
    if args.overrides and not args.config:
        raise PipelineError(f"key=value overrides ({' '.join(args.overrides)}) need --config")
    if args.config:
        if args.split:
            raise PipelineError("--split and --config both say which split; give one (data.split in the config)")
        data = load_config(args.config, args.overrides, encoder=False).data
        return data.n_folds, data.split
    return args.n_folds or N_FOLDS, args.split or "coverage"


def groups(work, train):
    """Each training tile's mosaic, for a split by mosaic (None for a split by coverage)."""
    if work.split != "mosaic":
        return None
    mosaic_made_from(work, train.digest)
    frame = read_mosaics(work.mosaic_csv, train.ids.tolist()).frame.set_index("id")
    return frame.loc[list(train.ids), "mosaic"].to_numpy()


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    count = p.add_mutually_exclusive_group()
    count.add_argument("--n-folds", type=int, default=None, help=f"number of folds (default {N_FOLDS})")
    count.add_argument("--config", default=None, help="take the number of folds from this config's data.n_folds")
    p.add_argument("--split", choices=SPLITS, default=None, help="by coverage (default) or by mosaic")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--force", action="store_true", help="rewrite the split's file if it exists")
    p.add_argument("overrides", nargs="*", help="with --config: dotted key=value pairs, e.g. data.n_folds=3")
    args = p.parse_args(argv)
    n_folds, kind = fold_kind(args)
    layout, work = cli.layouts(args, n_folds=n_folds, split=kind)
    train = load_train(layout, work)
    if work.folds_csv.exists() and not args.force:
        read_folds(work, train.ids)  # refuse a stale split made for other data
        print(f"{work.folds_csv} exists; reusing it (pass --force to rewrite)")
        return
    frame = make_folds(train.ids, train.coverage, work.n_folds, args.seed, groups(work, train))
    write_folds(work, frame)
    print(f"wrote {work.folds_csv}")
    print(fold_summary(frame).to_string())


if __name__ == "__main__":
    cli.run_stage(main)
