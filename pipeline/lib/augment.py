"""Augmentations by name: each one's parameters (a typed config section) and how it is built
(albumentations).

Each is applied to the 101x101 image and its mask together, before the image is put on the network
canvas; borders reflect (REFLECT_101), as the padding does. `p` is the probability; p: 0 turns one off.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from .schema import Section


class Augmentation(Section):
    p: float = Field(0.0, ge=0, le=1)

    def build(self, A, cv2):  # albumentations and cv2, loaded by build_augment only
        raise NotImplementedError


class HFlip(Augmentation):
    p: float = Field(0.5, ge=0, le=1)

    def build(self, A, cv2):
        return A.HorizontalFlip(p=self.p)


class Affine(Augmentation):
    shift: float = Field(0.1, ge=0, le=0.5)  # fraction of the side
    scale: float = Field(0.1, ge=0, lt=1)
    rotate: float = Field(10, ge=0, le=180)  # degrees

    def build(self, A, cv2):
        return A.Affine(translate_percent=(-self.shift, self.shift), scale=(1 - self.scale, 1 + self.scale),
                        rotate=(-self.rotate, self.rotate), border_mode=cv2.BORDER_REFLECT_101, p=self.p)


class BrightnessContrast(Augmentation):
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.1, ge=0, le=1)

    def build(self, A, cv2):
        return A.RandomBrightnessContrast(brightness_limit=self.brightness, contrast_limit=self.contrast, p=self.p)


class Gamma(Augmentation):
    low: float = Field(80, gt=0)  # percent
    high: float = Field(120, gt=0)

    @model_validator(mode="after")
    def ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self

    def build(self, A, cv2):
        return A.RandomGamma(gamma_limit=(self.low, self.high), p=self.p)


class Blur(Augmentation):
    limit: int = Field(3, ge=3, le=15)  # largest kernel side

    def build(self, A, cv2):
        return A.GaussianBlur(blur_limit=(3, self.limit | 1), p=self.p)


class Noise(Augmentation):
    std: float = Field(0.03, ge=0, le=1)

    def build(self, A, cv2):
        return A.GaussNoise(std_range=(0.0, self.std), p=self.p)


class Elastic(Augmentation):
    alpha: float = Field(10, ge=0)
    sigma: float = Field(5, gt=0)

    def build(self, A, cv2):
        return A.ElasticTransform(alpha=self.alpha, sigma=self.sigma, border_mode=cv2.BORDER_REFLECT_101, p=self.p)


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    "hflip": HFlip, "affine": Affine, "brightness_contrast": BrightnessContrast, "gamma": Gamma, "blur": Blur,
    "noise": Noise, "elastic": Elastic,
}


def enabled(section) -> dict[str, Augmentation]:
    """The augmentations of an `augment` section that are on (p > 0), by name."""
    return {name: params for name in AUGMENTATIONS if (params := getattr(section, name)) is not None and params.p > 0}


def build_augment(section):
    """The albumentations pipeline of a section (loaded here: a config is read without albumentations)."""
    import albumentations as A
    import cv2
    return A.Compose([params.build(A, cv2) for params in enabled(section).values()])
