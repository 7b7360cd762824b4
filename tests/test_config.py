import pytest

from pipeline.config import load_config, parse_override
from pipeline.errors import PipelineError
from pipeline.models import build_model
from pipeline.paths import CONFIG_DIR
from pipeline.schedule import lr_at
from pipeline.train import check_config


def test_overrides_nest_and_parse_yaml_values():
    assert parse_override("train.epochs=3") == {"train": {"epochs": 3}}
    assert parse_override("data.channels=[gray,depth]") == {"data": {"channels": ["gray", "depth"]}}
    config = load_config(CONFIG_DIR / "demo.yaml", ["train.epochs=7", "model.attention=scse"])
    assert config["train"]["epochs"] == 7 and config["model"]["attention"] == "scse"
    assert config["name"] == "demo"


def test_unknown_key_lists_the_valid_keys_of_its_section(tmp_path):
    with pytest.raises(PipelineError, match=r"unknown config key 'train\.epoch'.*epochs"):
        load_config(CONFIG_DIR / "demo.yaml", ["train.epoch=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoderr: resnet34\n")
    with pytest.raises(PipelineError, match="unknown config key 'model.encoderr'; valid keys in model: arch"):
        load_config(bad)


def test_malformed_inputs(tmp_path):
    with pytest.raises(PipelineError, match="must look like"):
        load_config(CONFIG_DIR / "demo.yaml", ["train.epochs"])
    with pytest.raises(PipelineError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_config(broken)


@pytest.mark.parametrize("override, message", [
    ("model.arch=Unett", "valid: Unet, UnetPlusPlus, FPN"),
    ("model.encoder=resnet35", "valid: .*resnet34"),
    ("train.loss={lovaz: 1}", "unknown loss 'lovaz'"),
    ("train.optimizer=rmsprop", "valid: adam, adamw, sgd"),
    ("data.input_mode=pad100", "valid: pad128, resize256"),
    ("data.channels=[depth]", "must start with gray"),
    ("augment.hflip={p: 0.5, q: 1}", "valid keys in augment.hflip: p"),
    ("augment.flip={p: 0.5}", "valid keys in augment: affine"),
])
def test_bad_names_are_reported_with_the_valid_ones(override, message):
    with pytest.raises(PipelineError, match=message):
        config = load_config(CONFIG_DIR / "demo.yaml", [override])
        check_config(config)
        build_model(config)


@pytest.mark.parametrize("name", ["default", "cpu", "demo"])
def test_shipped_configs_are_valid(name):
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    check_config(config)
    assert config["model"]["encoder_weights"] == "none"  # offline: nothing to download


def test_schedule_warms_up_then_anneals_per_cycle():
    t = {"lr": 1.0, "min_lr": 0.0, "epochs": 10, "cycles": 2, "warmup_epochs": 1}
    assert lr_at(0.0, t) < 0.01 and lr_at(0.5, t) == pytest.approx(0.5, abs=0.01)
    assert lr_at(2.5, t) == pytest.approx(0.5)  # half-way through the first 5-epoch cycle
    assert lr_at(4.999, t) < 1e-4 and lr_at(5.0, t) == pytest.approx(1.0)  # warm restart


def test_a_config_can_build_on_a_base(tmp_path):
    (tmp_path / "child.yaml").write_text(f"base: {CONFIG_DIR / 'cpu.yaml'}\nmodel:\n  attention: scse\n")
    config = load_config(tmp_path / "child.yaml")
    assert config["name"] == "child" and config["model"]["attention"] == "scse"
    assert config["model"]["encoder"] == "resnet18"  # from cpu.yaml
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(PipelineError, match="its own base"):
        load_config(tmp_path / "loop.yaml")
