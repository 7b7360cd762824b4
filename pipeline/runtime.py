"""Device, precision, optimiser and checkpoint helpers shared by the stages that run models."""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import PipelineError
from .store import atomic_path


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(config: dict, device: torch.device):
    amp = config["train"]["amp"]
    if device.type != "cuda" or amp == "none":
        return torch.autocast(device.type, enabled=False)
    if amp not in ("bf16", "fp16"):
        raise PipelineError(f"unknown train.amp '{amp}'; valid: bf16, fp16, none")
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def memory_format(obj, config: dict):
    """Channels-last models and inputs: faster convolutions on GPUs (tensor cores) and on CPUs (oneDNN)."""
    if not config["train"]["channels_last"]:
        return obj
    if isinstance(obj, torch.nn.Module):
        return obj.to(memory_format=torch.channels_last)
    return obj.contiguous(memory_format=torch.channels_last)


def make_optimizer(config: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = config["train"]
    params = model.parameters()
    if t["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=t["lr"], weight_decay=t["weight_decay"])
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"], weight_decay=t["weight_decay"],
                               nesterov=True)
    raise PipelineError(f"unknown train.optimizer '{t['optimizer']}'; valid: adam, adamw, sgd")


def rng_state(loader_gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "loader": loader_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, loader_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    loader_gen.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, **state) -> None:
    """Written to a temporary file and renamed, so an interrupted save never corrupts a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
