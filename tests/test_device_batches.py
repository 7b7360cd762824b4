"""Training batches held and augmented on the device (lib/device_batches.py), on CPU tensors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.lib.config import AugmentConfig, Config, load_config
from pipeline.lib.dataset import make_input
from pipeline.lib.device_batches import DeviceBatches, augment_batch, to_canvas_batch
from pipeline.lib.geometry import MODES
from pipeline.lib.names import INPUT_MODES
from pipeline.lib.paths import CONFIG_DIR
from tests.tiny_training import TINY


def augment(**on) -> AugmentConfig:
    """Only the named augmentations, with the given parameters."""
    return AugmentConfig(**{"hflip": {"p": 0.0}, **on})


def sample(n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 101, 101), dtype=np.uint8)
    masks = rng.random((n, 101, 101)) > 0.5
    return images, masks, rng.uniform(50, 950, n).astype(np.float32)


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_batched_inputs_equal_the_per_image_path(mode):
    images, _, depths = sample()
    channels = ["gray", "depth", "coord"]
    x = torch.from_numpy(images).float().div(255)[:, None]
    batched = to_canvas_batch(x, torch.from_numpy(depths), mode, channels).numpy()
    single = np.stack([make_input(im, d, mode, channels) for im, d in zip(images, depths)])
    tolerance = 1e-4 if MODES[mode][0] == 101 else 0.05  # torch and OpenCV resize differ slightly
    assert np.abs(batched - single).max() < tolerance


def test_flip_mirrors_image_and_mask_together():
    images, masks, _ = sample()
    x = torch.from_numpy(images).float()[:, None]
    y = torch.from_numpy(masks).float()[:, None]
    ax, ay = augment_batch(x, y, augment(hflip={"p": 1.0}), torch.Generator().manual_seed(0))
    assert torch.equal(ax, x.flip(-1)) and torch.equal(ay, y.flip(-1))


def test_identity_affine_changes_nothing_and_masks_stay_binary():
    images, masks, _ = sample()
    x = torch.from_numpy(images).float().div(255)[:, None]
    y = torch.from_numpy(masks).float()[:, None]
    still = augment(affine={"p": 1.0, "shift": 0.0, "scale": 0.0, "rotate": 0.0})
    ax, ay = augment_batch(x, y, still, torch.Generator().manual_seed(0))
    assert (ax - x).abs().max() < 1e-3 and torch.equal(ay, y)  # well under one grey level (1/255)
    moved = augment(affine={"p": 1.0, "shift": 0.1, "scale": 0.1, "rotate": 10})
    _, ay = augment_batch(x, y, moved, torch.Generator().manual_seed(0))
    assert set(torch.unique(ay).tolist()) <= {0.0, 1.0} and not torch.equal(ay, y)


def test_batches_are_reproducible_from_the_generator():
    images, masks, depths = sample(10)
    config = Config(augment={"hflip": {"p": 0.5}, "affine": {"p": 0.5}}, train={"batch_size": 4, "gpu_augment": True})
    runs = [list(DeviceBatches(images, depths, masks, config, torch.device("cpu"), torch.Generator().manual_seed(3)))
            for _ in range(2)]
    assert len(runs[0]) == 2 and runs[0][0][0].shape == (4, 1, 128, 128) and runs[0][0][1].shape == (4, 1, 101, 101)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*runs))


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -4), (-5, 2)])
def test_the_device_warp_reflects_borders_like_opencv_reflect_101(dx, dy):
    """A whole-pixel shift moves border pixels in from outside the image: they must be the ones OpenCV's
    BORDER_REFLECT_101 (the CPU path) brings in, edge pixel not repeated."""
    import cv2

    from pipeline.lib.device_batches import reflect_101
    image = np.random.default_rng(1).random((101, 101)).astype(np.float32)
    expected = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (101, 101), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    # output -> input sampling: input = output - shift, in normalised units (2 / 101 per pixel)
    theta = torch.tensor([[[1.0, 0.0, -dx * 2 / 101], [0.0, 1.0, -dy * 2 / 101]]], dtype=torch.float64)
    grid = reflect_101(F.affine_grid(theta, [1, 1, 101, 101], align_corners=False))
    warped = F.grid_sample(torch.from_numpy(image).double()[None, None], grid, mode="bilinear",
                           padding_mode="border", align_corners=False)[0, 0].numpy()
    assert np.abs(warped - expected).max() < 1e-4
    border = np.zeros((101, 101), bool)
    border[:5], border[-5:], border[:, :6], border[:, -6:] = True, True, True, True
    assert np.abs(warped - expected)[border].max() < 1e-4


def test_a_batch_split_over_a_group_is_shared_out_whole(demo_input, work):
    config = load_config(CONFIG_DIR / "demo.yaml", TINY + ["train.gpu_augment=true", "augment.hflip.p=0"])
    images = np.arange(16 * 101 * 101, dtype=np.uint8).reshape(16, 101, 101)
    masks, depths = np.zeros((16, 101, 101), np.uint8), np.zeros(16, np.float32)

    def first_batch(shard):
        batches = DeviceBatches(images, depths, masks, config, torch.device("cpu"), torch.Generator().manual_seed(3),
                                shard)
        return next(iter(batches))[0]

    whole, halves = first_batch((0, 1)), [first_batch((k, 2)) for k in range(2)]
    assert torch.equal(halves[0], whole[0::2]) and torch.equal(halves[1], whole[1::2])
