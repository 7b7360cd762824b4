"""Stage: train one fold of several experiments and tabulate their validation scores.

    python -m pipeline.ablate pipeline/configs/ablations/*.yaml [--fold 0] [--input DIR] [--out FILE.md]

Each config trains (or resumes, or is skipped when done) on the same fold; the table gives each one's
best validation mAP (threshold picked on a small grid, no TTA), its gain over the first config and
its training minutes, and is written as Markdown (default experiments/ablations.md).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import cli
from .config import load_config
from .errors import run_stage
from .paths import WorkLayout
from .store import write_text
from .train import check_config, train_fold


def summarize(work: WorkLayout, configs: list[Path], fold: int) -> pd.DataFrame:
    rows = []
    for path in configs:
        exp = work.experiment(path.stem)
        if not exp.log_csv(fold).exists():
            continue
        log = pd.read_csv(exp.log_csv(fold))
        rows.append({"experiment": path.stem, "val_mAP": round(log["score_best"].max(), 4),
                     "minutes": round(log["seconds"].sum() / 60, 1), "epochs": len(log),
                     "command": f"python -m pipeline.train --config {path} --fold {fold}"})
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(2, "vs_first", (table["val_mAP"] - table["val_mAP"].iloc[0]).round(4))
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
    for config in configs:
        train_fold(config, layout, work, args.fold, resume=True)
    table = summarize(work, args.configs, args.fold)
    out = args.out or work.root / "experiments" / "ablations.md"
    write_text(out, markdown(table))
    print(table.to_string(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_stage(main)
