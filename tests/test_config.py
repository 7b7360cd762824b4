"""The typed config: overrides, bases, and a one-line error for every bad key, value, type or combination."""
import pytest
import yaml

from pipeline.lib import names
from pipeline.lib.config import Config, check_encoder, load_config, parse_override, save_config
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import CONFIG_DIR, WorkLayout

DEMO = CONFIG_DIR / "demo.yaml"


def test_overrides_nest_and_parse_yaml_values():
    assert parse_override("train.epochs=3") == {"train": {"epochs": 3}}
    assert parse_override("data.channels=[gray,depth]") == {"data": {"channels": ["gray", "depth"]}}
    config = load_config(DEMO, ["train.epochs=7", "model.attention=scse", "model.decoder_channels=[32,32,16,16,16]"])
    assert config.train.epochs == 7 and config.model.attention == "scse"
    assert config.name.startswith("demo-")  # overrides of training make an experiment of their own...
    same = load_config(DEMO, ["train.epochs=7.0", "model.decoder_channels=[32, 32, 16, 16, 16]", "model.attention=scse"])
    assert same.name == config.name  # ...named by the resolved config, not by how the overrides were typed
    assert load_config(DEMO, ["predict.tta=none", "tune.min_areas=[0]"]).name == "demo"  # not training: same one
    assert load_config(DEMO, ["train.epochs=3"]).name == "demo"  # what the file already says


def test_exponent_notation_is_a_number():
    """YAML reads 1e-3 (no dot) as a string; the schema makes it the number it means."""
    config = load_config(DEMO, ["train.lr=1e-3", "train.min_lr=1e-5"])
    assert config.train.lr == 0.001 and isinstance(config.train.lr, float)


def test_unknown_key_lists_the_valid_keys_of_its_section(tmp_path):
    with pytest.raises(PipelineError, match=r"unknown config key 'train\.epoch'.*epochs"):
        load_config(DEMO, ["train.epoch=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoderr: resnet34\n")
    with pytest.raises(PipelineError, match=rf"config {bad}: unknown config key 'model.encoderr'; valid keys in "
                                            "model: arch"):
        load_config(bad)


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- train\n", "must be a mapping of sections"),
    ("train: 5\n", r"train = 5: Input should be a valid dictionary"),
    ("train:\n  epochs: 2\n  epochs: 3\n", "key 'epochs' appears twice"),
    ("train: [unclosed\n", "not valid YAML"),
    ("name: other\n", "remove the key 'name'"),
])
def test_malformed_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_malformed_override(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(PipelineError, match="must look like"):
        load_config(DEMO, ["train.epochs"])
    with pytest.raises(PipelineError, match="must look like"):
        load_config(DEMO, ["train..epochs=1"])


@pytest.mark.parametrize("override, message", [
    ("train.epochs=abc", r"train\.epochs = 'abc': Input should be a valid integer"),
    ("train.batch_size=0", r"train\.batch_size = 0: Input should be greater than or equal to 1"),
    ("train.lr=-1", r"train\.lr = -1: Input should be greater than 0"),
    ("train.weight_decay=-1", r"train\.weight_decay = -1: Input should be greater than or equal to 0"),
    ("train.num_workers=-1", r"train\.num_workers = -1"),
    ("train.val_every=0", r"train\.val_every = 0"),
    ("train.ema=1", r"train\.ema = 1: Input should be less than 1"),
    ("data.n_folds=1", r"data\.n_folds = 1: Input should be greater than or equal to 2"),
    ("augment.hflip.p=abc", r"augment\.hflip\.p = 'abc': Input should be a valid number"),
    ("augment.hflip.p=1.5", r"augment\.hflip\.p = 1\.5: Input should be less than or equal to 1"),
    ("augment.gamma={p: 0.5, low: 130, high: 90}", "low .* must not exceed high"),
    ("tune.thresholds.num=0", r"tune\.thresholds\.num = 0"),
    ("tune.thresholds={start: 0.7, stop: 0.3}", r"start \(0\.7\) must not exceed stop"),
    ("tune.min_areas=[]", r"tune\.min_areas = \[\]: List should have at least 1 item"),
    ("tune.empty_cuts=[1.5]", "each cut is null"),
    ("model.decoder_channels=[8]", r"model\.decoder_channels = \[8\]: List should have at least 5 items"),
    ("model.decoder_channels=[16,16,8,8,0]", "at least 1 channel"),
    ("train=5", "train = 5: Input should be a valid dictionary"),
    ("train.epochs=3.5", r"train\.epochs = 3\.5"),
    ("train.deep_supervision=maybe", r"train\.deep_supervision = 'maybe': Input should be a valid boolean"),
])
def test_bad_values_are_one_line_with_key_value_and_rule(override, message):
    with pytest.raises(PipelineError, match=message) as err:
        load_config(DEMO, [override])
    assert str(err.value).startswith(f"config {DEMO} with {override}:") and "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("model.arch=Unett", r"model\.arch = 'Unett': not a registered name; valid: Unet, UnetPlusPlus, FPN"),
    ("model.encoder=resnet35", r"model\.encoder = 'resnet35'.*valid: .*resnet34"),
    ("model.attention=cbam", r"model\.attention = 'cbam'.*valid: none, scse"),
    ("train.loss={lovaz: 1}", r"train\.loss\.lovaz = 'lovaz': not a registered name; valid: bce, dice, lovasz"),
    ("train.loss_after={}", "a loss needs at least one term"),
    ("train.loss={bce: 0}", "every loss weight must be above 0"),
    ("train.optimizer=rmsprop", "valid: adam, adamw, sgd"),
    ("train.amp=fp8", "valid: auto, bf16, fp16, none"),
    ("predict.tta=vflip", "valid: none, hflip"),
    ("predict.cpu_precision=fp16", "valid: auto, bf16, float32"),
    ("data.input_mode=pad100", "valid: pad128, resize256"),
    ("data.channels=[depth]", "must start with gray"),
    ("data.channels=[gray,gray]", "each once"),
    ("data.channels=[gray,height]", r"data\.channels\.1 = 'height'.*valid: gray, depth, coord"),
    ("augment.hflip={p: 0.5, q: 1}", "valid keys in augment.hflip: p"),
    ("augment.flip={p: 0.5}", "valid keys in augment: hflip, affine"),
])
def test_bad_names_list_the_registered_ones(override, message):
    with pytest.raises(PipelineError, match=message):
        load_config(DEMO, [override])


@pytest.mark.parametrize("overrides, message", [
    (["model.hypercolumn=true", "model.arch=UnetPlusPlus"], "hypercolumn needs arch Unet, not UnetPlusPlus"),
    (["model.attention=scse", "model.arch=FPN"], "attention scse needs arch Unet or UnetPlusPlus"),
    (["model.attention=scse"], r"at least 16 each, got \[64, 32, 16, 16, 8\]"),
    (["train.warmup_epochs=3"], r"warmup_epochs \(3\) must be below epochs \(3\)"),
    (["train.cycles=4"], r"cycles \(4\) must not exceed the epochs after warm-up \(3\)"),
    (["train.switch_epoch=3"], r"switch_epoch \(3\) must be below epochs"),
    (["train.min_lr=0.1"], "min_lr .* must not exceed lr"),
    (["train.gpu_augment=true", "augment.blur={p: 0.5}"], "gpu_augment supports hflip, affine, brightness_contrast"),
    (["train.deep_supervision=true"], "deep_supervision needs model.empty_head"),
])
def test_fields_that_must_agree(overrides, message):
    with pytest.raises(PipelineError, match=message):
        load_config(DEMO, overrides)


def test_every_shipped_config_is_valid():
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        if path.parent.name == "ensembles":  # tests/test_ensembles.py
            continue
        config = load_config(path)
        assert config.model.encoder_weights in ("none", "imagenet"), path  # never one machine's file path


def test_a_config_can_build_on_a_base(tmp_path):
    (tmp_path / "child.yaml").write_text(f"base: {CONFIG_DIR / 'cpu.yaml'}\nmodel:\n  decoder_channels: "
                                         "[128, 64, 32, 16, 16]\n  attention: scse\ntrain:\n  loss: {lovasz: 1}\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.name == "child" and config.model.attention == "scse"
    assert config.model.encoder == load_config(CONFIG_DIR / "cpu.yaml").model.encoder  # from cpu.yaml
    assert config.train.loss == {"lovasz": 1.0}  # a loss table is replaced whole, not merged
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(PipelineError, match="its own base"):
        load_config(tmp_path / "loop.yaml")


def test_saved_config_loads_back_identical(tmp_path):
    config = load_config(CONFIG_DIR / "default.yaml", ["train.lr=3e-4"])
    save_config(tmp_path / "default.yaml", config)
    assert "name" not in yaml.safe_load((tmp_path / "default.yaml").read_text())
    internal = {"name", "origin"}  # the name comes from the file; origin is where it was loaded from
    assert load_config(tmp_path / "default.yaml").model_dump(exclude=internal) == config.model_dump(exclude=internal)
    assert Config.model_validate(config.resolved()) == config.model_copy(update={"origin": {}})
    assert config.origin == {"config_file": str(CONFIG_DIR / "default.yaml"), "overrides": ["train.lr=3e-4"]}


LIGHT_CHECK = """
import sys
from pipeline.lib.config import load_config
from pipeline.lib.errors import PipelineError
load_config("cpu", ["train.lr=0.002"], encoder=False)
try:
    load_config("cpu", ["train.epochs=0"])
except PipelineError:
    pass
print(sorted(m for m in ("torch", "segmentation_models_pytorch", "timm", "albumentations", "cv2") if m in sys.modules))
"""


def test_reading_a_config_and_its_errors_load_no_model_library():
    """The config is data: reading one, and refusing a bad one, need neither torch nor smp (status answers
    at once; a config error does not wait for them)."""
    import subprocess
    import sys
    from pipeline.lib.paths import REPO
    out = subprocess.run([sys.executable, "-c", LIGHT_CHECK], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_encoder_is_checked_against_the_libraries_only_when_asked():
    config = load_config(DEMO, ["model.encoder=resnet35"], encoder=False)  # status, tune: no model is built
    with pytest.raises(PipelineError, match=r"config .*demo.yaml with model.encoder=resnet35: model\.encoder = "):
        check_encoder(config)


def registries():
    from pipeline.lib import geometry, losses, models, neighbours, runtime
    return {"input modes": (names.INPUT_MODES, geometry.MODES), "tta": (names.TTA, geometry.TTA),
            "losses": (names.LOSSES, losses.LOSSES), "neighbour rules": (names.NEIGHBOUR_RULES, neighbours.RULES),
            "optimizers": (names.OPTIMIZERS, runtime.OPTIMIZERS), "archs": (names.ARCHS, models.ARCHS),
            "attention": (names.ATTENTION, models.ATTENTION)}


@pytest.mark.parametrize("registry", list(registries()))
def test_every_registry_implements_the_names_the_config_checks(registry):
    listed, table = registries()[registry]
    assert tuple(table) == listed


def test_a_registry_that_differs_from_its_names_is_refused():
    with pytest.raises(RuntimeError, match="names.py lists"):
        names.implemented(("bce", "dice"), {"bce": None})


def test_gpu_augmentations_are_registered_augmentations():
    from pipeline.lib.augment import AUGMENTATIONS
    assert set(names.GPU_AUGMENTATIONS) <= set(AUGMENTATIONS)


@pytest.mark.parametrize("stem", ["my exp", "..", ".hidden", "\u00e9t\u00e9"])
def test_a_config_file_whose_name_is_no_experiment_name_is_refused(tmp_path, stem):
    """`...yaml` once made the experiment folder the work folder's root; `my exp.yaml` broke run.py."""
    path = tmp_path / f"{stem}.yaml"
    path.write_text((CONFIG_DIR / "demo.yaml").read_text())
    with pytest.raises(PipelineError, match=r"is not a name: use letters, digits"):
        load_config(path)


@pytest.mark.parametrize("value", ["../elsewhere", "/etc", ".hidden"])
def test_pseudo_labels_name_an_experiment_not_a_path(value):
    with pytest.raises(PipelineError, match="data.pseudo_labels .* must be an experiment's name"):
        load_config(CONFIG_DIR / "demo.yaml", [f"data.pseudo_labels={value}"])


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "x y"])
def test_no_experiment_folder_outside_experiments(tmp_path, name):
    with pytest.raises(PipelineError, match="is not a name"):
        WorkLayout(tmp_path).experiment(name)
    assert WorkLayout(tmp_path).experiment("cpu-1a2b3c+demo.v2").root.parent == tmp_path / "experiments"
