"""Stage: generate a small synthetic dataset in Kaggle's layout, for the demo run and the tests.

    python -m pipeline.demo --out demo/input [--n-train 400] [--n-test 200] [--seed 0] [--force]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .lib.cli import run_stage
from .lib.demo_data import make_demo


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo/input", help="folder to create (Kaggle layout)")
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="regenerate if the folder exists")
    args = p.parse_args(argv)
    if make_demo(Path(args.out), args.n_train, args.n_test, args.seed, args.force):
        print(f"wrote demo dataset to {args.out} ({args.n_train} train, {args.n_test} test images)")
    else:
        print(f"{args.out} exists; reusing it (pass --force to regenerate)")


if __name__ == "__main__":
    run_stage(main)
