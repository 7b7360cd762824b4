import numpy as np
import torch

from pipeline.lib.config import ModelConfig
from pipeline.lib.dataset import make_input, row_coordinate
from pipeline.lib.geometry import TTA, from_canvas, to_canvas, tta_logits


def test_pad_then_crop_is_exact():
    image = np.random.default_rng(0).random((101, 101)).astype(np.float32)
    canvas = to_canvas(image, "pad128")
    assert canvas.shape == (128, 128)
    back = from_canvas(torch.from_numpy(canvas)[None, None], "pad128")[0, 0].numpy()
    assert np.array_equal(back, image)
    assert canvas[12, 13] == image[1, 0]  # reflection without repeating the edge row


def test_resize_mode_round_trip_is_close():
    y, x = np.mgrid[0:101, 0:101]
    image = np.sin(x / 9.0).astype(np.float32) + np.cos(y / 7.0).astype(np.float32)
    canvas = to_canvas(image, "resize256")
    assert canvas.shape == (256, 256)
    back = from_canvas(torch.from_numpy(canvas)[None, None], "resize256")[0, 0].numpy()
    assert np.abs(back - image).max() < 0.05  # bilinear there and back, on a signal of range 4


def test_tta_views_invert_exactly():
    batch = torch.randn(2, 1, 128, 128)
    for forward, inverse in TTA["hflip"]:
        assert torch.equal(inverse(forward(batch)), batch)


def test_tta_of_an_equivariant_model_returns_its_own_output():
    class Identity(torch.nn.Module):
        def forward(self, x):
            return x, None

    batch = torch.randn(3, 1, 128, 128)
    probs, head = tta_logits(Identity(), batch, "hflip")
    assert head is None
    assert torch.allclose(probs, torch.sigmoid(batch))


def test_input_channels():
    image = np.full((101, 101), 120, np.uint8)
    x = make_input(image, 300.0, "pad128", ["gray", "depth", "coord"])
    assert x.shape == (3, 128, 128)
    assert np.allclose(x[1], (300 - 500) / 250)
    rows = row_coordinate("pad128")
    assert np.isclose(rows[13], -1) and np.isclose(rows[113], 1)  # rows 0 and 100 of the image
    assert np.allclose(x[2][:, 5], rows)


def test_model_output_is_canvas_sized_and_crops_to_101():
    from pipeline.lib.models import build_model
    model = ModelConfig(encoder="resnet18", empty_head=True, decoder_channels=[32, 32, 16, 16, 16], attention="scse")
    logits, head = build_model(model, 1).eval()(torch.randn(2, 1, 128, 128))
    assert logits.shape == (2, 1, 128, 128) and head.shape == (2, 1)
    assert from_canvas(logits, "pad128").shape == (2, 1, 101, 101)
