"""Stage: pseudo-label the test images an experiment's ensemble is confident about.

    python -m pipeline.pseudo --config pipeline/configs/default.yaml [--low 0.2] [--high 0.8] [--confident 0.9]

Reads experiments/<name>/test_probs.npz; an image is confident when at least `--confident` of its pixels
have p < low or p > high. With an image head, the head must agree: an image is confidently empty when the
head's P(salt) < low (whatever its pixels, which a deep-supervised mask never learns on empty images), and
one with salt needs P(salt) > high as well. Its mask is what the submission would hold: the tuned decision
(tune.json: threshold, min area, head cut; else a 0.5 threshold).
Writes experiments/<name>/pseudo_labels.npz (ids, masks). Another experiment trains on them plus the
train set with `data.pseudo_labels: <name>` (they join every fold's training part, never validation).
"""
from __future__ import annotations

import numpy as np

from .lib import cli
from .lib.config import load_config
from .lib.errors import PipelineError
from .lib.paths import WorkLayout
from .lib.postprocess import masks_from_probs, stored_decision
from .lib.probs import Probs, from_levels, load_probs
from .lib.store import atomic_path


def confident(probs: Probs, low: float, high: float, share: float) -> np.ndarray:
    """Which images have at least `share` of their pixels outside (low, high), and, given the image head's
    P(salt), the head agrees: below `low` is confidently empty, above `high` is needed for salt."""
    p = from_levels(probs.levels).reshape(len(probs.ids), -1)
    pixels = ((p < low) | (p > high)).mean(1) >= share
    if probs.salt_prob is None:
        return pixels
    return (probs.salt_prob < low) | ((probs.salt_prob > high) & pixels)


def pseudo_label(work: WorkLayout, name: str, low: float, high: float, share: float) -> dict:
    if not 0 <= low < high <= 1:
        raise PipelineError(f"need 0 <= --low < --high <= 1, got {low} and {high}")
    exp = work.experiment(name)
    probs = load_probs(exp.test_probs)
    keep = confident(probs, low, high, share)
    decision = stored_decision(exp)
    masks = masks_from_probs(probs.subset(probs.ids[keep]), decision)
    if probs.salt_prob is not None:  # confidently empty by the head: empty, whatever the tuned head cut
        masks[probs.salt_prob[keep] < low] = False
    with atomic_path(exp.pseudo_labels) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=probs.ids[keep], masks=masks)
    summary = {"images": int(keep.sum()), "of": int(len(keep)),
               "with_salt": float(masks.reshape(len(masks), -1).any(1).mean()) if len(masks) else 0.0}
    print(f"wrote {exp.pseudo_labels}: {summary['images']} of {summary['of']} test images are confident "
          f"({summary['with_salt']:.1%} of them with salt; {decision.describe()})")
    return summary


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--low", type=float, default=0.2)
    p.add_argument("--high", type=float, default=0.8)
    p.add_argument("--confident", type=float, default=0.9, help="share of pixels that must be confident")
    args = p.parse_args(argv)
    config = load_config(args.config, encoder=False)
    _, work = cli.layouts(args)
    pseudo_label(work, config.name, args.low, args.high, args.confident)


if __name__ == "__main__":
    cli.run_stage(main)
