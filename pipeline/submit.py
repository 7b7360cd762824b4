"""Stage: write the Kaggle submission CSV from stored test probabilities.

    python -m pipeline.submit --config pipeline/configs/default.yaml [--threshold T] [--min-area A]

Reads experiments/<name>/test_probs.npz and the tuned decision (experiments/<name>/tune.json, when
the tune stage has run; 0.5 otherwise); flags override it. Writes submissions/<name>.csv with
exactly sample_submission.csv's ids, in its order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import cli, rle
from .data import read_csv
from .errors import PipelineError, run_stage
from .paths import InputLayout, WorkLayout
from .postprocess import Decision, masks_from_probs
from .store import Probs, atomic_path, load_probs, read_json


def sample_ids(layout: InputLayout) -> list[str]:
    if not layout.root.is_dir():
        raise PipelineError(f"input folder {layout.root} does not exist; pass --input DIR or set TGS_INPUT")
    return list(read_csv(layout.sample_submission_csv, ["id", "rle_mask"])["id"])


def check_ids(probs: Probs, ids: list[str], source: Path) -> Probs:
    """The stored test probabilities, in sample_submission's order; they must cover exactly its ids."""
    extra = set(probs.ids).difference(ids)
    if extra:
        raise PipelineError(f"{source} holds {len(extra)} id(s) not in sample_submission.csv "
                            f"(first: {sorted(extra)[0]}); it was predicted for other data, rerun predict")
    return probs.subset(ids)


def write_submission(path: Path, ids: list[str], masks: np.ndarray) -> None:
    frame = pd.DataFrame({"id": ids, "rle_mask": rle.encode_many(masks)})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def stored_decision(work: WorkLayout, name: str) -> Decision:
    path = work.experiment(name).tune_json
    return Decision.from_dict(read_json(path)["decision"]) if path.exists() else Decision()


def submit(layout: InputLayout, work: WorkLayout, name: str, decision: Decision) -> Path:
    path = work.experiment(name).test_probs
    probs = check_ids(load_probs(path), sample_ids(layout), path)
    out = work.submission_csv(name)
    masks = masks_from_probs(probs, decision)
    write_submission(out, list(probs.ids), masks)
    print(f"wrote {out}: {len(masks)} images, {(masks.reshape(len(masks), -1).any(1)).mean():.1%} with salt, "
          f"threshold {decision.threshold:.3f}, min area {decision.min_area}")
    return out


def experiment_name(config: str) -> str:
    return Path(config).stem


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the experiment's YAML (its file stem names it)")
    p.add_argument("--threshold", type=float, default=None, help="override the tuned threshold")
    p.add_argument("--min-area", type=int, default=None, help="override the tuned minimum area")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args)
    name = experiment_name(args.config)
    decision = stored_decision(work, name)
    if args.threshold is not None or args.min_area is not None:
        decision = Decision(args.threshold if args.threshold is not None else decision.threshold,
                            args.min_area if args.min_area is not None else decision.min_area,
                            decision.empty_cut)
    submit(layout, work, name, decision)


if __name__ == "__main__":
    run_stage(main)
