"""Stage: train one fold (or all) of an experiment.

    python -m pipeline.train --config pipeline/configs/default.yaml --fold 0 [--input DIR] [key=value ...]
    python -m pipeline.train --config ... --fold all [--resume] [--force]

Outputs, per fold, in experiments/<name>/fold_K/: last.pt and best.pt (by validation mAP),
snapshot_C.pt at the end of each cosine cycle, log.csv (one row per epoch), curves.png and done.json;
the resolved config goes to experiments/<name>/config.yaml.
"""
from __future__ import annotations

from .lib import cli
from .lib.config import load_config
from .lib.distributed import Rank, finish
from .lib.fold_data import FoldInputs
from .lib.folds import fold_list
from .lib.records import untrained_folds
from .lib.training import train_fold


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--fold", required=True, help="a fold number, a list like 0,2, or 'all'")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fold from last.pt")
    p.add_argument("--force", action="store_true", help="discard a fold's outputs and train it again")
    p.add_argument("overrides", nargs="*", help="dotted key=value pairs, e.g. train.epochs=1")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)  # checked whole before anything else runs
    layout, work = cli.layouts(args, n_folds=config.data.n_folds, split=config.data.split)
    rank = Rank.from_env()
    rank.limit_threads()
    device = rank.device()
    asked = fold_list(args.fold, work)
    inputs = FoldInputs.load(layout, work)  # loaded and digested once for every fold
    exp = work.experiment(config.name)
    pending = asked if args.force else untrained_folds(exp, asked, inputs.identity(config))  # asked once a fold
    if rank.rank == 0:
        for fold in sorted(set(asked) - set(pending)):
            print(f"fold {fold}: up to date ({exp.done_marker(fold)}); pass --force to retrain")
    plan = rank.plan(pending)
    if rank.world > 1:
        print(f"rank {rank.rank} of {rank.world} on {device}: " + (", ".join(
            f"fold {fold}" + (f" (DDP, process {group.member + 1} of {group.size})" if group.size > 1 else "")
            for fold, group in plan) or "nothing to train"), flush=True)
    for fold, group in plan:
        train_fold(config, layout, inputs, fold, args.resume, args.force, device, group)
    finish()


if __name__ == "__main__":
    cli.run_stage(main)
