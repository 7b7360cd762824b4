"""Experiment configs: a typed schema (pydantic), YAML files on top of its defaults, `key=value` overrides.

An experiment is a config file; its name is the file's stem. A file may start from another with
`base: other.yaml` and change only what differs. The whole config is checked once, before any data is
loaded: unknown keys, names against their registries, types, ranges and the rules that tie fields
together. Every error is one line naming the file, the key, the bad value and what is valid.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from .augment import AUGMENTATIONS, enabled
from .errors import PipelineError
from .identity import digest, training_sections
from .names import (AMP, ARCHS, ATTENTION, CHANNELS, CPU_PRECISIONS, ENCODER_BN, GPU_AUGMENTATIONS, INPUT_MODES, LOSSES,
                    MIN_SCSE_CHANNELS, NEIGHBOUR_RULES, OPTIMIZERS, TAKES_ATTENTION, TAKES_DECODER_CHANNELS,
                    TAKES_HYPERCOLUMN, TTA)
from .paths import EXPERIMENT_NAME, N_FOLDS, NAME_RULE, SPLITS, checked_name, config_file
from .schema import Name, Section
from .store import write_text

INTERNAL = ("name", "origin")  # Config fields the pipeline sets, never a config file


class DataConfig(Section):
    # pad128: reflect-pad 101->128; resize256: resize to 202, pad to 256; resize96: resize to 96 (no padding)
    input_mode: Name(INPUT_MODES) = "pad128"
    channels: list[Name(CHANNELS)] = ["gray"]  # gray, plus optionally depth and/or coord (row coordinate)
    drop_blank: bool = False  # drop constant images from training; they are predicted empty
    pseudo_labels: Optional[str] = None  # an experiment's name: add the test images its pseudo stage labelled
    n_folds: int = Field(N_FOLDS, ge=2)  # the k of the k-fold split (folds/folds.csv for 5, else folds-K.csv)
    # coverage: stratified by mask coverage | mosaic: the same, each mosaic wholly in one fold (folds-mosaic.csv)
    split: Name(SPLITS) = "coverage"

    @field_validator("pseudo_labels")
    @classmethod
    def an_experiment(cls, name):
        if name is not None and not EXPERIMENT_NAME.match(name):
            raise ValueError(f"must be an experiment's name ({NAME_RULE}), not a path")
        return name

    @field_validator("channels")
    @classmethod
    def gray_first(cls, channels):
        if not channels or channels[0] != "gray" or len(set(channels)) != len(channels):
            raise ValueError("must start with gray and may add depth and/or coord, each once")
        return channels


class ModelConfig(Section):
    arch: Name(ARCHS) = "Unet"
    encoder: str = Field("resnet34", min_length=1)  # smp's or tu-<timm model>: checked by check_encoder
    encoder_weights: str = "none"  # none | imagenet | path to a local encoder weights file
    decoder_channels: list[int] = Field([256, 128, 64, 32, 16], min_length=5, max_length=5)
    attention: Name(ATTENTION) = "none"  # none | scse (decoder attention)
    empty_head: bool = False  # image-level salt / no-salt head, trained jointly
    hypercolumn: bool = False  # fuse upsampled decoder levels before the mask head

    @field_validator("decoder_channels")
    @classmethod
    def positive(cls, channels):
        if min(channels) < 1:
            raise ValueError("every level needs at least 1 channel")
        return channels

    @model_validator(mode="after")
    def options_fit_the_arch(self):
        if self.hypercolumn and self.arch not in TAKES_HYPERCOLUMN:
            raise ValueError(f"hypercolumn needs arch {' or '.join(TAKES_HYPERCOLUMN)}, not {self.arch}")
        if self.attention != "none":
            if self.arch not in TAKES_ATTENTION:
                raise ValueError(f"attention {self.attention} needs arch {' or '.join(TAKES_ATTENTION)}, not {self.arch}")
            if self.arch in TAKES_DECODER_CHANNELS and min(self.decoder_channels) < MIN_SCSE_CHANNELS:
                raise ValueError(f"attention {self.attention} needs decoder_channels of at least "
                                 f"{MIN_SCSE_CHANNELS} each, got {self.decoder_channels}")
        return self


AugmentConfig = create_model(  # one optional field per registered augmentation, with its own parameters
    "AugmentConfig", __base__=Section,
    **{name: (Optional[params], params()) for name, params in AUGMENTATIONS.items()})

LossTerms = dict[Name(LOSSES), float]


class TrainConfig(Section):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Name(OPTIMIZERS) = "adam"
    lr: float = Field(1.0e-3, gt=0)
    min_lr: float = Field(1.0e-5, ge=0)
    weight_decay: float = Field(1.0e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    warmup_epochs: int = Field(1, ge=0)
    cycles: int = Field(1, ge=1)  # cosine cycles (warm restarts); a snapshot is kept at the end of each
    grad_clip: float = Field(0.0, ge=0)  # max gradient norm; 0 turns clipping off
    # decay of a moving average of the weights (timm's ModelEmaV3, warm-up on), which is validated and saved
    # in place of the raw weights; 0 turns it off
    ema: float = Field(0.0, ge=0, lt=1)
    # SWA: the equal average of the weights at the end of the last swa_epochs epochs, its BatchNorm statistics
    # recomputed over the fold's training images, validated and kept as best.pt when it beats every epoch; 0: off
    swa_epochs: int = Field(0, ge=0)
    loss: LossTerms = {"bce": 1.0, "dice": 1.0}  # weighted sum of registered losses
    switch_epoch: Optional[int] = Field(None, ge=1)  # from this epoch on, loss_after is used instead
    loss_after: LossTerms = {"lovasz_symmetric": 1.0}
    empty_head_weight: float = Field(0.1, ge=0)
    deep_supervision: bool = False  # with model.empty_head: the mask loss sees only images with salt
    amp: Name(AMP) = "auto"  # auto (bf16 from compute capability 8.0, else fp16) | bf16 | fp16 | none; GPU only
    seed: int = 42
    num_workers: int = Field(2, ge=0)
    gpu_augment: bool = False  # hold the train set on the device and augment batches there
    val_every: int = Field(1, ge=1)
    resume_every: int = Field(1, ge=1)  # epochs between resume checkpoints (last.pt, with optimizer state)
    channels_last: bool = True
    tensorboard: bool = False  # event files per fold (TensorBoard installed: the tensorboard extra)
    deterministic: bool = False  # deterministic kernels only, no cuDNN autotuning: reruns write identical logs
    # the encoder's BatchNorm: train | affine (statistics kept at their start values) | frozen (scale, shift too)
    encoder_bn: Name(ENCODER_BN) = "train"
    compile: bool = False  # torch.compile the training step (inductor: fuses BatchNorm, activations, backward)
    # progressive resizing: the first early_epochs train on this canvas (e.g. resize96), the rest, validation and
    # prediction on data.input_mode
    early_input_mode: Optional[Name(INPUT_MODES)] = None
    early_epochs: int = Field(0, ge=0)

    @field_validator("loss", "loss_after")
    @classmethod
    def terms(cls, terms):
        if not terms:
            raise ValueError(f"a loss needs at least one term; valid: {', '.join(LOSSES)}")
        if min(terms.values()) <= 0:
            raise ValueError("every loss weight must be above 0")
        return terms

    @model_validator(mode="after")
    def schedule_fits(self):
        if self.swa_epochs >= self.epochs:
            raise ValueError(f"swa_epochs ({self.swa_epochs}) must be below epochs ({self.epochs})")
        if self.swa_epochs and self.ema:
            raise ValueError("swa_epochs and ema both average the weights; use one of them")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        if self.cycles > self.epochs - self.warmup_epochs:
            raise ValueError(f"cycles ({self.cycles}) must not exceed the epochs after warm-up "
                             f"({self.epochs - self.warmup_epochs})")
        if (self.early_input_mode is None) != (self.early_epochs == 0) or self.early_epochs >= self.epochs:
            raise ValueError(f"early_input_mode and early_epochs go together, early_epochs ({self.early_epochs}) "
                             f"below epochs ({self.epochs})")
        if self.switch_epoch is not None and self.switch_epoch >= self.epochs:
            raise ValueError(f"switch_epoch ({self.switch_epoch}) must be below epochs ({self.epochs})")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self


class PredictConfig(Section):
    tta: Name(TTA) = "hflip"  # none | hflip
    use_snapshots: bool = False  # average the cycle snapshots instead of using the best checkpoint
    batch_size: int = Field(256, ge=1)
    # on a CPU: auto (bf16 where the CPU has AMX tiles, else float32) | bf16 | float32; GPUs follow train.amp
    cpu_precision: Name(CPU_PRECISIONS) = "auto"


class ThresholdGrid(Section):
    start: float = Field(0.2, gt=0, lt=1)
    stop: float = Field(0.8, gt=0, lt=1)
    num: int = Field(61, ge=1)

    @model_validator(mode="after")
    def ordered(self):
        if self.start > self.stop:
            raise ValueError(f"start ({self.start}) must not exceed stop ({self.stop})")
        return self


class TuneConfig(Section):
    thresholds: ThresholdGrid = ThresholdGrid()
    min_areas: list[int] = Field([0, 10, 20, 40, 80, 160, 240, 320], min_length=1)
    empty_cuts: list[Optional[float]] = Field([None, 0.3, 0.4, 0.5, 0.6, 0.7], min_length=1)
    # fractions of the image a mask must cover to be kept when the head's cut would empty it (null: never);
    # kept only when it raises the out-of-fold mAP above noise on at least rules_min_images images
    full_keeps: list[Optional[float]] = Field([None, 0.9, 0.95], min_length=1)
    # neighbour rules tune tries on the mosaic (mosaic/mosaic.csv), keeping those that raise the CV; [] for none
    neighbour_rules: list[Name(NEIGHBOUR_RULES)] = list(NEIGHBOUR_RULES)
    rules_min_images: int = Field(10, ge=1)  # a rule is kept only if it changes at least this many images

    @field_validator("min_areas")
    @classmethod
    def areas(cls, areas):
        if min(areas) < 0:
            raise ValueError("areas are pixel counts, 0 or more")
        return areas

    @field_validator("empty_cuts")
    @classmethod
    def cuts(cls, cuts):
        if any(c is not None and not 0 < c < 1 for c in cuts):
            raise ValueError("each cut is null (no cut) or a probability between 0 and 1")
        return cuts

    @field_validator("full_keeps")
    @classmethod
    def keeps(cls, keeps):
        if any(k is not None and not 0 < k <= 1 for k in keeps):
            raise ValueError("each is null (never) or a fraction of the image above 0, at most 1")
        return keeps


class Config(Section):
    name: str = ""  # the experiment's name: its file's stem (never written in the file)
    origin: dict = {}  # the file and overrides it was made from (set by load_config; saved as made_from.json)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    predict: PredictConfig = PredictConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def sections_agree(self):
        if self.train.gpu_augment:
            unsupported = [name for name in enabled(self.augment) if name not in GPU_AUGMENTATIONS]
            if unsupported:
                raise ValueError(f"train.gpu_augment supports {', '.join(GPU_AUGMENTATIONS)}; set "
                                 f"augment.{unsupported[0]}.p=0 or train.gpu_augment=false")
        if self.train.encoder_bn != "train" and self.model.encoder_weights == "none":
            raise ValueError(f"train.encoder_bn {self.train.encoder_bn} keeps the encoder's BatchNorm statistics, "
                             "which a random encoder does not have; set model.encoder_weights or train.encoder_bn=train")
        if self.train.deep_supervision and not self.model.empty_head:
            raise ValueError("train.deep_supervision needs model.empty_head: true (the head answers for empty images)")
        return self

    @property
    def in_channels(self) -> int:
        return len(self.data.channels)

    def resolved(self) -> dict:
        """Plain data (what config.yaml and checkpoints hold); Config.model_validate reads it back."""
        return self.model_dump(mode="json", exclude={"origin"})


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML whose mappings may not repeat a key (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise PipelineError(f"config {path} does not exist; shipped configs are in pipeline/configs/")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise PipelineError(f"config {path} is not valid YAML: {' '.join(str(err).split())}") from None
    if raw is None:
        raise PipelineError(f"config {path} is empty; give at least one section, or `base: default.yaml`")
    if not isinstance(raw, dict):
        raise PipelineError(f"config {path} must be a mapping of sections (data, model, train, ...), "
                            f"not a {type(raw).__name__}")
    if "name" in raw:
        raise PipelineError(f"config {path}: remove the key 'name'; an experiment is named by its file's stem")
    if "origin" in raw:
        raise PipelineError(f"config {path}: remove the key 'origin'; it is written by the pipeline, not in a config")
    return raw


def section_type(schema: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The section class of field `key` (unwrapping Optional), or None for a plain value or open mapping."""
    field = schema.model_fields.get(key)
    if field is None:
        return None
    for candidate in (field.annotation, *get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def merge(base: dict, update: dict, schema: type[BaseModel]) -> dict:
    """`base` updated by `update`: sections merge key by key, anything else (values, lists, loss tables)
    is replaced whole."""
    out = dict(base)
    for key, value in update.items():
        inner = section_type(schema, key)
        if inner is not None and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, inner)
        else:
            out[key] = value
    return out


def layered(path: Path, seen: tuple = ()) -> dict:
    """The chain of `base:` files (each relative to the file naming it, else a shipped config by name, so a
    config of one's own may say `base: cpu.yaml`), then this file, as raw data."""
    if path.resolve() in seen:
        raise PipelineError(f"config {path} is its own base (through {', '.join(p.name for p in seen)})")
    raw = read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    beside = path.parent / str(base)
    return merge(layered(beside if beside.is_file() else config_file(str(base)), seen + (path.resolve(),)), raw,
                 Config)


def parse_override(text: str) -> dict:
    """`train.epochs=1` -> {"train": {"epochs": 1}}; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or "" in key.split("."):
        raise PipelineError(f"override '{text}' must look like section.key=value (e.g. train.epochs=1)")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else None
    except yaml.YAMLError as err:
        raise PipelineError(f"override '{text}': the value is not valid YAML ({' '.join(str(err).split())})") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def describe_error(err: ValidationError, source: str) -> str:
    """The first error of a validation, as one line: where, the key, the bad value, what is valid."""
    first = err.errors(include_url=False)[0]
    key = ".".join(str(part) for part in first["loc"] if part != "[key]")  # a mapping's key: named by its path
    message = first["msg"].removeprefix("Value error, ")
    extra = "" if err.error_count() == 1 else f" (and {err.error_count() - 1} more error(s))"
    if first["type"] == "extra_forbidden":
        parent = Config
        for part in first["loc"][:-1]:
            parent = section_type(parent, str(part)) or parent
        where = ".".join(str(p) for p in first["loc"][:-1]) or "top level"
        return (f"config {source}: unknown config key '{key}'; valid keys in {where}: "
                f"{', '.join(k for k in parent.model_fields if k not in INTERNAL)}{extra}")
    value = first.get("input")
    shown = "" if isinstance(value, dict) and first["type"] != "model_type" else f" = {value!r}"
    if first["loc"]:
        return f"config {source}: {key}{shown}: {message}{extra}"
    return f"config {source}: {message}{extra}"


def validate(raw: dict, source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise PipelineError(describe_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] = (), encoder: bool = True) -> Config:
    """The resolved, checked config of an experiment. Its name is the file's stem; when overrides change
    what training depends on (data, model, augment, train), it is a different experiment, named
    `<stem>-<digest of those sections>`, so that its folds never mix with the file's own. `encoder`: check
    the encoder's name against the installed smp and timm too (stages that build no model skip it)."""
    path = config_file(path)
    checked_name(path.stem, f" (the file name of {path})")
    file_raw = layered(path)
    if "ensemble" in file_raw:
        raise PipelineError(f"config {path} is an ensemble of experiments, not one: run it with "
                            f"`bash run.sh --config {path}` (or `python -m pipeline.status --config {path}`)")
    raw = file_raw
    for text in overrides:
        raw = merge(raw, parse_override(text), Config)
    source = source_of(path, overrides)
    config = validate({**raw, "name": path.stem}, source)
    if overrides:
        plain = validate({**file_raw, "name": path.stem}, str(path))
        if training_sections(plain) != training_sections(config):
            config = config.model_copy(update={"name": f"{path.stem}-{digest(training_sections(config))[:6]}"})
    config = config.model_copy(update={"origin": {"config_file": str(path), "overrides": list(overrides)}})
    if encoder:
        check_encoder(config)
    return config


def source_of(path, overrides: list[str]) -> str:
    """How errors name a config: its file, and the overrides on top."""
    return f"{path}" + (f" with {' '.join(overrides)}" if overrides else "")


def check_encoder(config: Config) -> None:
    """Encoder names are smp's and timm's, so they are checked against the installed libraries: torch and smp
    load here, and only here, for the stages that build a model (reading a config never needs them)."""
    from .models import ENCODERS
    name, origin = config.model.encoder, config.origin
    if name not in ENCODERS:
        source = source_of(origin.get("config_file", config.name), origin.get("overrides", []))
        raise PipelineError(f"config {source}: model.encoder = {name!r}: not a registered name; valid: "
                            f"{', '.join(ENCODERS)}")


def save_config(path: Path, config: Config, made_from: Path | None = None) -> None:
    """The resolved config, loadable again with load_config (the name comes from the file's stem), and in
    `made_from` (an experiment's made_from.json) the config file and overrides it was made from."""
    resolved = {key: value for key, value in config.resolved().items() if key != "name"}
    write_text(path, yaml.safe_dump(resolved, sort_keys=False))
    if made_from is not None and config.origin:
        write_text(made_from, json.dumps(config.origin, indent=2) + "\n")
