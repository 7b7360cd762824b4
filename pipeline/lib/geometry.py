"""The 101x101 image <-> network canvas mapping, and flip TTA; numpy for inputs, torch for outputs.

pad128:    reflect-pad 101 -> 128 (13 before, 14 after); outputs are cropped back exactly.
resize256: resize 101 -> 202 (bilinear), reflect-pad to 256 (27 each side); outputs are cropped
           to 202 and resized back to 101.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import names
from .names import INPUT_MODES, implemented

SIZE = 101  # the competition's image side
MODES = implemented(INPUT_MODES, {  # name -> (resized size, canvas size)
    "pad128": (101, 128),
    "resize256": (202, 256),
    "resize96": (96, 96),  # 56% of pad128's pixels, 27% of them padding there: a fast canvas for early epochs
})


def margins(mode: str) -> tuple[int, int, int]:
    """(resized size, pad before, pad after)."""
    inner, canvas = MODES[mode]
    before = (canvas - inner) // 2
    return inner, before, canvas - inner - before


def epoch_input_mode(config, epoch: int) -> str:
    """The canvas a training epoch is on: `train.early_input_mode` for the first `train.early_epochs`
    (progressive resizing), else the data's, which validation and prediction always use."""
    t = config.train
    return t.early_input_mode if epoch < t.early_epochs else config.data.input_mode


def to_canvas(image: np.ndarray, mode: str, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """One (101, 101[, C]) array onto the network canvas, reflect-padded."""
    inner, before, after = margins(mode)
    if inner != SIZE:
        image = cv2.resize(image, (inner, inner), interpolation=interpolation)
    return cv2.copyMakeBorder(image, before, after, before, after, cv2.BORDER_REFLECT_101)


def from_canvas(output: torch.Tensor, mode: str) -> torch.Tensor:
    """Network output (N, C, S, S) back to (N, C, 101, 101)."""
    inner, before, _ = margins(mode)
    crop = output[..., before:before + inner, before:before + inner]
    if inner != SIZE:
        crop = F.interpolate(crop, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return crop


def hflip(batch: torch.Tensor) -> torch.Tensor:
    return torch.flip(batch, dims=[-1])


TTA = implemented(names.TTA, {  # name -> list of (forward, inverse) pairs; the inverse undoes the forward on the output
    "none": [(lambda x: x, lambda y: y)],
    "hflip": [(lambda x: x, lambda y: y), (hflip, hflip)],
})


def tta_logits(model, batch: torch.Tensor, tta: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean probability over the TTA views (each mapped back), and mean image-head probability."""
    probs, heads = [], []
    for forward, inverse in TTA[tta]:
        mask_logits, head_logit = model(forward(batch))
        probs.append(inverse(torch.sigmoid(mask_logits.float())))
        if head_logit is not None:
            heads.append(torch.sigmoid(head_logit.float()))
    head = torch.stack(heads).mean(0) if heads else None
    return torch.stack(probs).mean(0), head
