"""Stage: train the same folds of several experiments and tabulate their validation scores.

    python -m pipeline.ablate pipeline/configs/ablations/*.yaml [--fold 0|0,1|all] [--input DIR] [--out FILE.md]

Each config trains (or resumes, or is skipped when done) on the same folds. The table gives, per config,
`tuned_mAP`: the mAP of the folds' validation images predicted by each fold's weights as `predict` picks
them (best checkpoint, or the averaged snapshots with predict.use_snapshots) with flip TTA, pooled, under
one tuned decision (threshold, minimum area, and the image head's cut when it has one) -- with `--fold
all` that is the k-fold CV score, as `tune` computes it for a submission --, its gain over the first
config, the mAP lost on empty images, masks under 10% coverage and larger ones (`lost_*`), the best validation mAP seen during training (mean over folds; threshold from a small grid, no
TTA), and training minutes (all folds). Written as Markdown (default
experiments/ablations.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .lib import cli
from .lib.config import load_config
from .lib.cv import tuned_score
from .lib.errors import PipelineError
from .lib.fold_data import FoldInputs
from .lib.folds import fold_list
from .lib.paths import WorkLayout
from .lib.records import untrained_folds
from .lib.report import markdown_table
from .lib.runtime import pick_device
from .lib.store import write_text
from .lib.training import train_fold


def summarize(work: WorkLayout, configs: list[Path], folds: list[int], tuned: dict | None = None,
              fold_arg: str | None = None) -> pd.DataFrame:
    """One row per config whose folds all have a training log; `tuned`: `tuned_score` per config name."""
    rows = []
    for path in configs:
        exp = work.experiment(path.stem)
        if not all(exp.log_csv(fold).exists() for fold in folds):
            continue
        logs = [pd.read_csv(exp.log_csv(fold)) for fold in folds]
        scores = (tuned or {}).get(path.stem, {})
        rows.append({"experiment": path.stem, "tuned_mAP": scores.get("tuned_mAP", float("nan")),
                     **{key: value for key, value in scores.items() if key.startswith("lost_")},
                     "train_val_mAP": round(float(np.mean([log["score_best"].max() for log in logs])), 4),
                     "minutes": round(sum(log["seconds"].sum() for log in logs) / 60, 1),
                     "epochs": len(logs[0]),
                     "command": f"python -m pipeline.train --config {path} --fold {fold_arg or folds[0]}"})
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(2, "vs_first", (table["tuned_mAP"] - table["tuned_mAP"].iloc[0]).round(4))
    return table


def markdown(table: pd.DataFrame) -> str:
    return markdown_table(table, code=("command",)) if len(table) else "no trained experiments\n"


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", type=Path)
    p.add_argument("--fold", default="0", help="a fold number, a list like 0,2, or 'all' (k-fold CV)")
    p.add_argument("--out", type=Path, default=None, help="Markdown table (default: experiments/ablations.md)")
    args = p.parse_args(argv)
    configs = [load_config(path) for path in args.configs]  # every config is checked before hours of training
    splits = sorted({(config.data.n_folds, config.data.split) for config in configs})
    if len(splits) > 1:
        raise PipelineError(f"ablate scores every config on one split, but their data.n_folds / data.split differ "
                            f"({', '.join(f'{k} by {kind}' for k, kind in splits)})")
    layout, work = cli.layouts(args, n_folds=splits[0][0], split=splits[0][1])
    folds = fold_list(args.fold, work)
    inputs = FoldInputs.load(layout, work)  # loaded once: every config is scored on the same images
    tuned = {}
    for config in configs:
        for fold in untrained_folds(work.experiment(config.name), folds, inputs.identity(config)):
            train_fold(config, layout, inputs, fold, resume=True)
        tuned[config.name] = tuned_score(inputs, config, folds, pick_device())
    table = summarize(work, args.configs, folds, tuned, args.fold)
    out = args.out or work.ablations_md
    write_text(out, markdown(table))
    print(table.to_string(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run_stage(main)
