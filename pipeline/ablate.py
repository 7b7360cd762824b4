"""Stage: train one fold of several experiments and tabulate their validation scores.

    python -m pipeline.ablate pipeline/configs/ablations/*.yaml [--fold 0] [--input DIR] [--out FILE.md]

Each config trains (or resumes, or is skipped when done) on the same fold. The table gives, per config,
the best validation mAP seen during training (threshold from a small grid, no TTA), the fold's mAP of
its best checkpoint with flip TTA and the tuned decision (threshold, minimum area, and the image
head's cut when it has one: the way it would be submitted), the gain of that over the first config,
and training minutes. Written as Markdown (default experiments/ablations.md).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import cli
from .config import load_config
from .errors import run_stage
from .data import load_train
from .folds import read_folds
from .paths import InputLayout, WorkLayout
from .predict import load_models, predict_images
from .runtime import pick_device
from .store import Probs, to_levels, write_text
from .train import check_config, train_fold
from .tune import search


def tuned_score(config: dict, layout: InputLayout, work: WorkLayout, fold: int) -> float:
    """The fold's validation mAP as it would be submitted: best checkpoint, flip TTA, tuned decision."""
    train = load_train(layout, work)
    val = read_folds(work, train.ids)["fold"].to_numpy() == fold
    device = pick_device()
    models = load_models(config, [work.experiment(config["name"]).best_checkpoint(fold)], device)
    probs, head = predict_images(models, train.images[val], train.depths[val], config, device)
    _, score, _ = search(Probs(train.ids[val], to_levels(probs), head), train.masks[val], config["tune"])
    return round(score, 4)


def summarize(work: WorkLayout, configs: list[Path], fold: int, tuned: dict | None = None) -> pd.DataFrame:
    rows = []
    for path in configs:
        exp = work.experiment(path.stem)
        if not exp.log_csv(fold).exists():
            continue
        log = pd.read_csv(exp.log_csv(fold))
        rows.append({"experiment": path.stem, "tuned_mAP": (tuned or {}).get(path.stem, float("nan")),
                     "train_val_mAP": round(log["score_best"].max(), 4),
                     "minutes": round(log["seconds"].sum() / 60, 1), "epochs": len(log),
                     "command": f"python -m pipeline.train --config {path} --fold {fold}"})
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(2, "vs_first", (table["tuned_mAP"] - table["tuned_mAP"].iloc[0]).round(4))
    return table


def markdown(table: pd.DataFrame) -> str:
    if not len(table):
        return "no trained experiments\n"
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"`{v}`" if c == "command" else str(v) for c, v in row.items()) + " |"
              for row in table.to_dict("records")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", type=Path)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="Markdown table (default: experiments/ablations.md)")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args)
    configs = [load_config(path) for path in args.configs]
    for config in configs:
        check_config(config)  # every name is checked before hours of training start
    tuned = {}
    for config in configs:
        train_fold(config, layout, work, args.fold, resume=True)
        tuned[config["name"]] = tuned_score(config, layout, work, args.fold)
    table = summarize(work, args.configs, args.fold, tuned)
    out = args.out or work.root / "experiments" / "ablations.md"
    write_text(out, markdown(table))
    print(table.to_string(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_stage(main)
