"""Experiment configs: YAML on top of defaults, `key=value` overrides on top of that.

An experiment is a config file; its name is the file's stem. A config may start from another with
`base: other.yaml` and change only what differs. Every key must be one the defaults know, so a typo
is an error that lists the valid keys of its section instead of a silent no-op.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import PipelineError
from .store import write_text

DEFAULTS: dict = {
    "data": {
        "input_mode": "pad128",  # pad128: reflect-pad 101->128; resize256: resize to 202, pad to 256
        "channels": ["gray"],  # gray, plus optionally depth and/or coord (row coordinate)
        "drop_blank": False,  # drop constant images from training; they are predicted empty
        "pseudo_labels": None,  # an experiment's name: add the test images its pseudo stage labelled
    },
    "model": {
        "arch": "Unet",
        "encoder": "resnet34",
        "encoder_weights": "none",
        "decoder_channels": [256, 128, 64, 32, 16],  # none | imagenet | path to a local encoder weights file
        "attention": "none",  # none | scse (decoder attention)
        "empty_head": False,  # image-level salt / no-salt head, trained jointly
        "hypercolumn": False,  # fuse upsampled decoder levels before the mask head (Unet only)
    },
    "augment": {  # name -> parameters (p = probability); null or p: 0 turns one off
        "hflip": {"p": 0.5},
        "affine": {"p": 0.0, "shift": 0.1, "scale": 0.1, "rotate": 10},
        "brightness_contrast": {"p": 0.0, "brightness": 0.1, "contrast": 0.1},
        "gamma": {"p": 0.0, "low": 80, "high": 120},
        "blur": {"p": 0.0, "limit": 3},
        "noise": {"p": 0.0, "std": 0.03},
        "elastic": {"p": 0.0, "alpha": 10, "sigma": 5},
    },
    "train": {
        "epochs": 40,
        "batch_size": 32,
        "optimizer": "adam",  # adam | adamw | sgd
        "lr": 1.0e-3,
        "min_lr": 1.0e-5,
        "weight_decay": 1.0e-4,
        "momentum": 0.9,  # sgd only
        "warmup_epochs": 1,
        "cycles": 1,  # cosine cycles (warm restarts); a snapshot is kept at the end of each
        "grad_clip": 0.0,  # max gradient norm; 0 turns clipping off
        "loss": {"bce": 1.0, "dice": 1.0},  # weighted sum of registered losses
        "switch_epoch": None,  # from this epoch on, loss_after is used instead
        "loss_after": {"lovasz_symmetric": 1.0},
        "empty_head_weight": 0.1,
        "deep_supervision": False,  # with model.empty_head: the mask loss sees only images with salt
        "amp": "bf16",  # bf16 | fp16 | none; GPU only
        "seed": 42,
        "num_workers": 2,
        "gpu_augment": False,  # hold the train set on the device and augment batches there
        "val_every": 1,
        "channels_last": True,
    },
    "predict": {
        "tta": "hflip",  # none | hflip
        "use_snapshots": False,  # average the cycle snapshots instead of using the best checkpoint
        "batch_size": 256,
    },
    "tune": {
        "thresholds": {"start": 0.2, "stop": 0.8, "num": 61},
        "min_areas": [0, 10, 20, 40, 80, 160, 240, 320],
        "empty_cuts": [None, 0.3, 0.4, 0.5, 0.6, 0.7],
    },
}


def merge(base: dict, update: dict, where: str = "") -> dict:
    """`base` updated by `update`; every key of `update` must exist in `base`."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in base:
            section = where or "top level"
            raise PipelineError(f"unknown config key '{where + '.' if where else ''}{key}'; valid keys in "
                                f"{section}: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and isinstance(value, dict) and not _is_open(where, key):
            out[key] = merge(base[key], value, f"{where}.{key}" if where else key)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _is_open(where: str, key: str) -> bool:
    """Loss term tables name any registered loss, so their keys are checked by the loss registry."""
    return where == "train" and key in ("loss", "loss_after")


def parse_override(text: str) -> dict:
    """`train.epochs=1` -> {"train": {"epochs": 1}}; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise PipelineError(f"override '{text}' must look like section.key=value (e.g. train.epochs=1)")
    value = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise PipelineError(f"config {path} does not exist; shipped configs are in pipeline/configs/")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"config {path} is not valid YAML: {err}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise PipelineError(f"config {path} must be a mapping of sections (data, model, train, ...)")
    return raw


def layered(path: Path, seen: tuple = ()) -> dict:
    """Defaults, then the chain of `base:` files (each relative to the file naming it), then this file."""
    if path.resolve() in seen:
        raise PipelineError(f"config {path} is its own base (through {', '.join(p.name for p in seen)})")
    raw = read_yaml(path)
    base = raw.pop("base", None)
    under = DEFAULTS if base is None else layered(path.parent / base, seen + (path.resolve(),))
    return merge(under, raw)


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """The resolved config of an experiment; its name is the file's stem."""
    path = Path(path)
    config = layered(path)
    for text in overrides:
        config = merge(config, parse_override(text))
    config["name"] = path.stem
    return config


def save_config(path: Path, config: dict) -> None:
    """The resolved config, loadable again with load_config (the name comes from the file stem)."""
    resolved = {key: value for key, value in config.items() if key != "name"}
    write_text(path, yaml.safe_dump(resolved, sort_keys=False))
