"""Every registered augmentation builds from its config section and moves image and mask together."""
import numpy as np
import pytest

from pipeline.lib.augment import AUGMENTATIONS, build_augment, enabled
from pipeline.lib.config import AugmentConfig


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_keeps_size_type_and_a_binary_mask(name):
    section = AugmentConfig(**{"hflip": {"p": 0.0}, name: {"p": 1.0}})
    assert list(enabled(section)) == [name]
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:101, 0:101]
    image = ((x * 2 + y) % 256).astype(np.uint8)  # a gradient: any geometric change shows
    mask = (x < 40).astype(np.uint8)
    transform = build_augment(section)
    transform.set_random_seed(int(rng.integers(1000)))
    out = transform(image=image, mask=mask)
    assert out["image"].shape == (101, 101) and out["image"].dtype == np.uint8
    assert out["mask"].shape == (101, 101) and set(np.unique(out["mask"])) <= {0, 1}
    assert not np.array_equal(out["image"], image)
    if name == "hflip":
        assert np.array_equal(out["image"], image[:, ::-1]) and np.array_equal(out["mask"], mask[:, ::-1])


def test_p_zero_or_null_turns_one_off():
    section = AugmentConfig(hflip=None, affine={"p": 0.0}, blur={"p": 0.3})
    assert list(enabled(section)) == ["blur"]
