"""The submission file: sample_submission's ids, in its order, each with its mask's RLE."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import rle
from .data import read_csv
from .errors import PipelineError
from .paths import InputLayout
from .probs import Probs
from .store import atomic_path


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
