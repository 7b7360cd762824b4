import pytest
import segmentation_models_pytorch as smp
import torch

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.models import build_model
from pipeline.paths import CONFIG_DIR

SMALL = ["model.decoder_channels=[32,32,16,16,16]"]


@pytest.mark.parametrize("overrides, size", [
    (["model.hypercolumn=true", "model.attention=scse"], 128),
    (["model.arch=FPN"], 128),
    (["model.arch=UnetPlusPlus", "model.decoder_channels=[32,16,16,16,16]"], 128),
    (["data.input_mode=resize256", "data.channels=[gray,depth,coord]", "model.empty_head=true"], 256),
])
def test_model_variants_run(overrides, size):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL + overrides)
    model = build_model(config).eval()
    with torch.no_grad():
        logits, head = model(torch.randn(2, len(config["data"]["channels"]), size, size))
    assert logits.shape == (2, 1, size, size)
    assert (head is not None) == config["model"]["empty_head"]


def test_encoder_weights_from_a_local_file(tmp_path):
    """An RGB (ImageNet-style) encoder file loads; its first conv is folded to the gray input."""
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    source = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    torch.save(source.state_dict(), tmp_path / "encoder.pth")
    config["model"]["encoder_weights"] = str(tmp_path / "encoder.pth")
    loaded = build_model(config).net.encoder.state_dict()
    for name, tensor in source.state_dict().items():
        if name == "conv1.weight":
            assert torch.allclose(loaded[name], tensor.sum(1, keepdim=True))
        else:
            assert torch.equal(loaded[name], tensor), name
    config["model"]["encoder_weights"] = str(tmp_path / "missing.pth")
    with pytest.raises(PipelineError, match="does not exist; use none, imagenet or a path"):
        build_model(config)
