"""Stage: train one fold (or all) of an experiment.

    python -m pipeline.train --config pipeline/configs/default.yaml --fold 0 [--input DIR] [key=value ...]
    python -m pipeline.train --config ... --fold all [--resume] [--force]

Outputs, per fold, in experiments/<name>/fold_K/: last.pt and best.pt (by validation mAP),
snapshot_C.pt at the end of each cosine cycle, log.csv (one row per epoch), curves.png and done.json;
the resolved config goes to experiments/<name>/config.yaml.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from .lib import cli
from .lib.config import load_config
from .lib.errors import PipelineError, run_stage
from .lib.folds import fold_list
from .lib.training import train_fold


def child_command(args, fold: int) -> list[str]:
    command = [sys.executable, "-m", "pipeline.train", "--config", args.config, "--fold", str(fold)]
    for flag in ("input", "workdir"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    command += ["--resume"] * args.resume + ["--force"] * args.force
    return command + list(args.overrides)


def train_parallel(args, folds: list[int], slots: int, gpus: int) -> None:
    """Up to `slots` fold processes at once, each taking the next fold: one per GPU when there are
    GPUs, else each on its share of the CPU cores. A failure stops the rest."""
    pending, running = list(folds), {}
    threads = max(1, (os.cpu_count() or 1) // slots)
    while pending or running:
        while pending and len(running) < slots:
            slot = next(s for s in range(slots) if s not in running)
            fold = pending.pop(0)
            env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": str(slot)} if gpus else {"OMP_NUM_THREADS": str(threads)}))
            running[slot] = (fold, subprocess.Popen(child_command(args, fold), env=env))
        time.sleep(1)
        for slot, (fold, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[slot]
            if proc.returncode:
                for _, other in running.values():
                    other.terminate()
                for _, other in running.values():
                    other.wait()  # no orphaned or defunct fold processes
                where = f"GPU {slot}" if gpus else f"worker {slot}"
                raise PipelineError(f"fold {fold} failed on {where} (exit {proc.returncode}); see its output above")


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--fold", required=True, help="a fold number, a list like 0,2, or 'all'")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fold from last.pt")
    p.add_argument("--force", action="store_true", help="discard a fold's outputs and train it again")
    p.add_argument("--parallel", type=int, default=None,
                   help="folds trained at once (default: one per GPU when there are several, else 1)")
    p.add_argument("overrides", nargs="*", help="dotted key=value pairs, e.g. train.epochs=1")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)  # checked whole before anything else runs
    layout, work = cli.layouts(args)
    folds = fold_list(args.fold, work)
    gpus = torch.cuda.device_count()
    slots = args.parallel or (gpus if gpus > 1 else 1)
    if gpus and slots > gpus:
        raise PipelineError(f"--parallel {slots} exceeds the {gpus} GPU(s) torch sees")
    if len(folds) > 1 and slots > 1:
        train_parallel(args, folds, slots, gpus)
        return
    for fold in folds:
        train_fold(config, layout, work, fold, args.resume, args.force)


if __name__ == "__main__":
    run_stage(main)
