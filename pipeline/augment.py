"""Augmentations by name, built from the config's `augment` section (albumentations).

Each is applied to the 101x101 image and its mask together, before the image is put on the network
canvas; borders reflect, as the padding does.
"""
from __future__ import annotations

import albumentations as A
import cv2

from .errors import PipelineError


def _affine(p, shift, scale, rotate):
    return A.Affine(translate_percent=(-shift, shift), scale=(1 - scale, 1 + scale), rotate=(-rotate, rotate),
                    border_mode=cv2.BORDER_REFLECT_101, p=p)


AUGMENTATIONS = {
    "hflip": lambda p: A.HorizontalFlip(p=p),
    "affine": _affine,
    "brightness_contrast": lambda p, brightness, contrast: A.RandomBrightnessContrast(
        brightness_limit=brightness, contrast_limit=contrast, p=p),
    "gamma": lambda p, low, high: A.RandomGamma(gamma_limit=(low, high), p=p),
    "blur": lambda p, limit: A.GaussianBlur(blur_limit=(3, max(3, limit | 1)), p=p),
    "noise": lambda p, std: A.GaussNoise(std_range=(0.0, std), p=p),
    "elastic": lambda p, alpha, sigma: A.ElasticTransform(alpha=alpha, sigma=sigma,
                                                          border_mode=cv2.BORDER_REFLECT_101, p=p),
}


def build_augment(section: dict) -> A.Compose:
    steps = []
    for name, params in section.items():
        if name not in AUGMENTATIONS:
            raise PipelineError(f"unknown augmentation '{name}'; valid: {', '.join(AUGMENTATIONS)}")
        if not params or not params.get("p"):
            continue
        try:
            steps.append(AUGMENTATIONS[name](**params))
        except TypeError as err:
            raise PipelineError(f"augment.{name}: {err}") from None
    return A.Compose(steps)
