"""Every registered architecture (with and without the image head) builds and runs; start weights from a
file; checkpoints rebuild the model alone, offline."""
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch

from pipeline.lib.checkpoints import (CheckpointSaver, TrainingState, load_checkpoint, model_from_checkpoint,
                                      save_checkpoint)
from pipeline.lib.config import load_config
from pipeline.lib.errors import PipelineError
from pipeline.lib.models import ARCHS, build_model
from pipeline.lib.names import TAKES_DECODER_CHANNELS
from pipeline.lib.paths import CONFIG_DIR, WorkLayout

SMALL = ["model.decoder_channels=[32,32,16,16,16]"]


@pytest.mark.parametrize("empty_head", [False, True])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_builds_and_runs_on_a_128_batch(arch, empty_head):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL + [f"model.arch={arch}", f"model.empty_head={empty_head}"])
    model = build_model(config.model, config.in_channels).eval()
    with torch.no_grad():
        logits, head = model(torch.randn(2, 1, 128, 128))
    assert logits.shape == (2, 1, 128, 128)
    assert (head is None) != empty_head and (head is None or head.shape == (2, 1))


@pytest.mark.parametrize("overrides, size", [
    (["model.hypercolumn=true", "model.attention=scse"], 128),
    (["model.arch=UnetPlusPlus", "model.attention=scse"], 128),
    (["data.input_mode=resize256", "data.channels=[gray,depth,coord]", "model.empty_head=true"], 256),
])
def test_model_options_run(overrides, size):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL + overrides)
    model = build_model(config.model, config.in_channels).eval()
    with torch.no_grad():
        logits, _ = model(torch.randn(2, config.in_channels, size, size))
    assert logits.shape == (2, 1, size, size)


def test_decoder_channels_reach_the_archs_that_take_them():
    for arch in TAKES_DECODER_CHANNELS:
        config = load_config(CONFIG_DIR / "demo.yaml", [f"model.arch={arch}", "model.decoder_channels=[40,32,24,16,8]"])
        model = build_model(config.model, 1)
        assert any(m.out_channels == 40 for m in model.modules() if isinstance(m, torch.nn.Conv2d)), arch


def test_encoder_weights_from_a_local_file(tmp_path):
    """An RGB (ImageNet-style) encoder file loads; its first conv is folded to the gray input."""
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    source = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    torch.save(source.state_dict(), tmp_path / "encoder.pth")
    model_section = config.model.model_copy(update={"encoder_weights": str(tmp_path / "encoder.pth")})
    loaded = build_model(model_section, 1).net.encoder.state_dict()
    for name, tensor in source.state_dict().items():
        if name == "conv1.weight":
            assert torch.allclose(loaded[name], tensor.sum(1, keepdim=True))
        else:
            assert torch.equal(loaded[name], tensor), name
    with pytest.raises(PipelineError, match="does not exist; use none, imagenet or a path"):
        build_model(config.model.model_copy(update={"encoder_weights": str(tmp_path / "missing.pth")}), 1)
    torch.save(source, tmp_path / "whole_model.pth")  # a pickled module, not a state dict
    with pytest.raises(PipelineError, match="is not a readable state dict"):
        build_model(config.model.model_copy(update={"encoder_weights": str(tmp_path / "whole_model.pth")}), 1)


def test_a_model_is_rebuilt_from_its_checkpoint_alone_without_start_weights(tmp_path):
    """The checkpoint names a start-weights file that is gone (an offline kernel): prediction needs none."""
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL + ["model.empty_head=true"])
    trained = build_model(config.model, 1)
    gone = config.model_copy(update={"model": config.model.model_copy(update={"encoder_weights": "/gone/w.pth"})})
    save_checkpoint(tmp_path / "best.pt", model=trained.state_dict(), config=gone.resolved(), epoch=0)
    rebuilt, stored = model_from_checkpoint(tmp_path / "best.pt")
    assert stored == gone.model_copy(update={"origin": {}})  # where a config was loaded from is not kept
    for (name, a), b in zip(trained.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "is damaged or not a checkpoint"),
    (lambda p: p.write_bytes(b"not a checkpoint at all"), "is damaged or not a checkpoint"),
    (lambda p: torch.save({"weights": 1}, p), "lacks model and config"),
    (lambda p: p.unlink(), "is missing"),
])
def test_damaged_checkpoints_are_one_line_errors_naming_the_file(tmp_path, damage, message):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    path = tmp_path / "best.pt"
    save_checkpoint(path, model=build_model(config.model, 1).state_dict(), config=config.resolved())
    damage(path)
    with pytest.raises(PipelineError, match=rf"checkpoint {path} {message}"):
        model_from_checkpoint(path)


def test_weights_that_do_not_fit_their_own_config_are_not_called_a_config_change(tmp_path):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    other = load_config(CONFIG_DIR / "demo.yaml")
    save_checkpoint(tmp_path / "best.pt", model=build_model(other.model, 1).state_dict(), config=config.resolved())
    with pytest.raises(PipelineError, match="do not fit the model its own config describes"):
        model_from_checkpoint(tmp_path / "best.pt")


def test_saver_writes_each_kind_and_clears_killed_saves(tmp_path):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    exp = WorkLayout(tmp_path).experiment("demo")
    exp.fold_dir(0).mkdir(parents=True)
    (exp.fold_dir(0) / ".best.pt.x1y2.tmp").write_bytes(b"")
    saver = CheckpointSaver(exp, 0, config)
    assert not list(exp.fold_dir(0).glob(".*.tmp"))
    model = build_model(config.model, 1)
    assert saver.save_checkpoint(model, epoch=2, metric=0.5)
    saver.save_snapshot(model, cycle=1, step=30)
    state = TrainingState(epoch=2, step=30, best_score=saver.best_score, start_weights="none", optimizer={},
                          scaler={}, rng={})
    saver.save_last(model, state)
    assert load_checkpoint(exp.best_checkpoint(0))["score"] == 0.5
    assert load_checkpoint(exp.snapshot(0, 1))["step"] == 30 and exp.snapshots(0) == [exp.snapshot(0, 1)]
    assert load_checkpoint(exp.last_checkpoint(0))["config"] == config.resolved()
    weights, loaded = CheckpointSaver(exp, 0, config).load_last("cpu", steps_per_epoch=15)
    assert loaded == state and weights.keys() == model.state_dict().keys()


def test_the_saver_decides_the_best_epoch_and_only_its_writer_writes(tmp_path):
    """Every process of a DDP group keeps the same best score; only the leader's saver writes best.pt."""
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    exp = WorkLayout(tmp_path).experiment("demo")
    model = build_model(config.model, 1)
    writer, other = CheckpointSaver(exp, 0, config), CheckpointSaver(exp, 0, config, writes=False)
    for saver in (writer, other):
        assert [saver.save_checkpoint(model, epoch, metric) for epoch, metric in enumerate([0.5, 0.4, 0.5, 0.6])] == \
            [True, False, False, True]
        assert saver.best_score == 0.6
    assert load_checkpoint(exp.best_checkpoint(0))["epoch"] == 3


def test_a_resume_checkpoint_from_an_earlier_version_fills_what_it_lacks(tmp_path):
    """last.pt files from before the step and the start weights were saved still resume (lib/compat.py)."""
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    exp = WorkLayout(tmp_path).experiment("demo")
    CheckpointSaver(exp, 0, config)
    save_checkpoint(exp.last_checkpoint(0), model={}, config=config.resolved(), identity={}, epoch=3,
                    best_score=0.7, optimizer={}, scaler={}, rng={})
    _, state = CheckpointSaver(exp, 0, config).load_last("cpu", steps_per_epoch=10)
    assert (state.step, state.ema, state.best_score) == (40, None, 0.7)
    assert state.start_weights.startswith("unknown")


class Trap:
    """An object whose unpickling would create a file: what a hostile checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_and_its_code_never_runs(tmp_path):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL)
    path, marker = tmp_path / "best.pt", tmp_path / "ran"
    torch.save({"model": build_model(config.model, 1).state_dict(), "config": config.resolved(),
                "extra": Trap(marker)}, path)
    with pytest.raises(PipelineError, match=rf"checkpoint {path} holds objects that only an unsafe loader reads"):
        model_from_checkpoint(path)
    assert not marker.exists()


def test_random_states_of_earlier_versions_still_load_and_resume(tmp_path):
    """last.pt kept numpy's random state as a tuple with an array, and numpy floats: read by the safe loader."""
    from pipeline.lib.runtime import rng_state, set_rng_state
    generator = torch.Generator()
    old = {**rng_state(generator), "numpy": np.random.get_state()}
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "config": {}, "rng": old, "best_score": np.float64(0.7)}, path)
    loaded = load_checkpoint(path)
    expected = np.random.random()
    set_rng_state(loaded["rng"], generator)
    assert np.random.random() == expected and loaded["best_score"] == 0.7
    set_rng_state(rng_state(generator), generator)  # this version's own form


def test_the_cpu_recipe_builds_on_smps_current_encoder_names_without_a_warning(recwarn):
    config = load_config(CONFIG_DIR / "cpu.yaml", ["model.encoder_weights=none", "data.channels=[gray,depth]"])
    assert config.model.encoder.startswith("tu-")
    model = build_model(config.model, config.in_channels).eval()
    with torch.no_grad():
        masks, head = model(torch.zeros(2, config.in_channels, 128, 128))
    assert masks.shape == (2, 1, 128, 128) and head.shape == (2, 1)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_a_deprecated_encoder_name_is_one_note_naming_the_replacement(capsys, recwarn):
    config = load_config(CONFIG_DIR / "demo.yaml", SMALL + ["model.encoder=timm-tf_efficientnet_lite0"])
    build_model(config.model, 1)
    assert "smp deprecates encoder timm-tf_efficientnet_lite0 and will remove it; new experiments should use " \
           "tu-tf_efficientnet_lite0" in capsys.readouterr().out
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_a_timm_universal_name_is_checked_against_timm():
    with pytest.raises(PipelineError, match="model.encoder = 'tu-no_such_net': not a registered name; valid: .*tu-<a timm model>"):
        load_config(CONFIG_DIR / "demo.yaml", ["model.encoder=tu-no_such_net"])
