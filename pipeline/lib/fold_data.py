"""The work folder's training data and split (`FoldInputs`, loaded once per stage), and what one fold
trains and validates on (`FoldData`): the other folds' images (less blank ones when the config drops them,
plus pseudo-labelled test images when it names a source), and its own images."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .data import TestSet, TrainSet, load_train
from .dataset import is_blank
from .errors import PipelineError
from .folds import read_folds, split_digest
from .identity import digest, training_sections
from .paths import ExperimentLayout, InputLayout, WorkLayout
from .records import fold_identity, require_trained


@dataclass
class Images:
    ids: np.ndarray
    images: np.ndarray  # uint8 (N, 101, 101)
    depths: np.ndarray  # float32 (N,)
    masks: np.ndarray  # bool (N, 101, 101)

    @classmethod
    def of(cls, train: TrainSet) -> "Images":
        """All of a training set's images."""
        return cls(train.ids, train.images, train.depths, train.masks)

    def __getitem__(self, rows) -> "Images":
        return Images(self.ids[rows], self.images[rows], self.depths[rows], self.masks[rows])

    def __len__(self) -> int:
        return len(self.ids)

    def join(self, other: "Images") -> "Images":
        return Images(*(np.concatenate([a, b]) for a, b in zip(
            (self.ids, self.images, self.depths, self.masks), (other.ids, other.images, other.depths, other.masks))))


@dataclass
class FoldData:
    fit: Images  # what the fold trains on
    val: Images  # the fold's own images: validation during training, out-of-fold predictions after


@dataclass(frozen=True)
class FoldInputs:
    """The training data and the split of one work folder, read and digested once: what every fold of
    every experiment on this split trains on, and so what a fold's identity is made of."""

    work: WorkLayout
    train: TrainSet
    split: np.ndarray  # each training image's fold, aligned with `train`
    split_digest: str
    # identities made so far, by the config parts they depend on: a named start-weights file is hashed once
    identities: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, layout: InputLayout, work: WorkLayout) -> "FoldInputs":
        return cls.of(load_train(layout, work), work)

    @classmethod
    def of(cls, train: TrainSet, work: WorkLayout) -> "FoldInputs":
        """With the training data loaded already (the work folder's split is read and checked against it)."""
        frame = read_folds(work, train.ids)
        return cls(work, train, frame["fold"].to_numpy(), split_digest(frame))

    @property
    def folds(self) -> list[int]:
        return sorted(set(self.split.tolist()))

    def identity(self, config) -> dict:
        """What a fold of `config` trained on these inputs depends on (its done.json identity)."""
        key = digest(training_sections(config), config.model.encoder_weights, config.data.pseudo_labels)
        if key not in self.identities:
            self.identities[key] = fold_identity(config, self.work, self.train.digest, self.split_digest)
        return self.identities[key]

    def require_trained(self, config) -> None:
        """Every fold of `config` trained on these inputs, or one line naming the first that is not (or what
        changed): what predict checks before predicting, and tune and submit before reusing predictions."""
        require_trained(self.work.experiment(config.name), self.folds, self.identity(config))

    def fold_data(self, fold: int, drop_blank: bool, pseudo: "Images | None" = None) -> "FoldData":
        return fold_data(self.train, self.split, fold, drop_blank, pseudo)


def fold_data(train: TrainSet, split: np.ndarray, fold: int, drop_blank: bool,
              pseudo: Images | None = None) -> FoldData:
    """`split`: each training image's fold, aligned with `train`."""
    if fold not in set(split.tolist()):
        raise PipelineError(f"fold {fold} is not in the split (folds: {sorted(set(split.tolist()))})")
    everything = Images.of(train)
    fit = split != fold
    if drop_blank:
        fit &= ~is_blank(train.images)
    fit_set = everything[fit] if pseudo is None else everything[fit].join(pseudo)
    return FoldData(fit_set, everything[split == fold])


def pseudo_labelled(source: ExperimentLayout, test: TestSet) -> Images:
    """The test images experiment `source`'s pseudo stage labelled confidently, with their masks."""
    path = source.pseudo_labels
    if not path.exists():
        raise PipelineError(f"{path} is missing; run `python -m pipeline.pseudo --config "
                            f"<{source.root.name}'s config>` first")
    try:
        with np.load(path, allow_pickle=False) as stored:
            ids, masks = stored["ids"].astype(str), stored["masks"].astype(bool)
    except (OSError, KeyError, ValueError) as err:
        raise PipelineError(f"{path} is not a valid pseudo-label file ({err}); rerun the pseudo stage") from None
    rows = pd.Index(test.ids).get_indexer(ids)
    if (rows < 0).any() or masks.shape != (len(ids),) + test.images.shape[1:]:
        raise PipelineError(f"{path} does not match this input's test images; rerun the pseudo stage")
    print(f"adding {len(rows)} pseudo-labelled test images from {path}")
    return Images(ids, test.images[rows], test.depths[rows], masks)
