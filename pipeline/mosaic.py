"""Stage: put the train and test tiles back into the seismic sections they were cut from.

    python -m pipeline.mosaic [--input DIR] [--workdir DIR] [--force]

Matches every tile's edges against every other's (pipeline/lib/mosaic.py says how) and writes
mosaic/mosaic.csv (id, mosaic, row, col for all 22,000 tiles; a tile in no mosaic is a mosaic of one),
mosaic_<k>.png for the largest mosaics (tiles in place, training masks outlined) and, last, mosaic.json
(what it was made from: new data or matching settings make it stale). Folds by mosaic (`data.split: mosaic`)
and the neighbour rules of tune and submit read it.
"""
from __future__ import annotations

import time

import numpy as np

from .lib import cli, plots
from .lib.data import load_test, load_train
from .lib.mosaic import MatchSettings, build, seams_continue, write_mosaics
from .lib.paths import MOSAIC_PICTURES
from .lib.records import mosaic_stage


def report(summary: dict, seams: tuple[int, int], seconds: float) -> str:
    s, big = summary, summary["largest"]
    sides = ", ".join(f"{n} {side}" for side, n in s["neighbour_pairs"].items())
    if not s["mosaics"]:
        return f"no two of the {s['tiles']} tiles match: every tile is a mosaic of one ({seconds:.1f} s)"
    return (f"placed {s['tiles_placed']} of {s['tiles']} tiles in {s['mosaics']} mosaics of two or more "
            f"(largest: {big['tiles']} tiles, {big['rows']} x {big['cols']}); neighbour pairs: {sides}; "
            f"{seams[0]} of {seams[1]} shared edges continue; {s['test_with_train_neighbour']} of "
            f"{s['test_tiles']} test tiles have a training tile beside them; {seconds:.1f} s")


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="match again even when mosaic.json is up to date")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args)
    train, test = load_train(layout, work), load_test(layout, work)
    settings = MatchSettings()
    stage = mosaic_stage(work, train.digest, test.digest, settings.to_dict())
    if not stage.begin(args.force):
        return
    ids = np.concatenate([train.ids, test.ids])
    tiles = np.concatenate([train.images, test.images])
    started = time.perf_counter()
    mosaics = build(ids, tiles, settings)
    seconds = time.perf_counter() - started
    summary = mosaics.summary(train.ids)
    seams = seams_continue(tiles, ids, mosaics.frame)
    write_mosaics(work.mosaic_csv, mosaics)
    for old in work.mosaic_dir.glob("mosaic_*.png"):  # pictures of an earlier layout
        old.unlink()
    plots.mosaics(mosaics, dict(zip(ids, tiles)), dict(zip(train.ids, train.masks)), None, None,
                  [work.mosaic_png(k) for k in range(MOSAIC_PICTURES)])
    stage.finish(**summary, shared_edges_continue=seams[0], seconds=round(seconds, 2))
    print(report(summary, seams, seconds))
    print(f"wrote {work.mosaic_csv} and {work.mosaic_png(0).name} ... (the {MOSAIC_PICTURES} largest)")


if __name__ == "__main__":
    cli.run_stage(main)
