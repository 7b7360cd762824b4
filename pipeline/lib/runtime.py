"""Device, precision, optimisers and random state: what the stages that run models share."""
from __future__ import annotations

import random

import numpy as np
import torch

OPTIMIZERS = {  # name -> (params, train section) -> optimizer
    "adam": lambda params, t: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay),
    "adamw": lambda params, t: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                                             nesterov=True),
}
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}  # mixed precision on GPUs


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(amp: str, device: torch.device):
    """Mixed precision on a GPU as `amp` names it; CPUs always run in float32."""
    dtype = AMP[amp]
    if device.type != "cuda" or dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=dtype)


def memory_format(obj, channels_last: bool):
    """Channels-last models and inputs: faster convolutions on GPUs (tensor cores) and on CPUs (oneDNN)."""
    if not channels_last:
        return obj
    if isinstance(obj, torch.nn.Module):
        return obj.to(memory_format=torch.channels_last)
    return obj.contiguous(memory_format=torch.channels_last)


def make_optimizer(train, model: torch.nn.Module) -> torch.optim.Optimizer:
    return OPTIMIZERS[train.optimizer](model.parameters(), train)


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
    restore_cuda_rng(state.get("cuda", []))


def restore_cuda_rng(states: list) -> None:
    """Per-GPU generator states, for as many GPUs as both the saving and this machine have: a run saved
    on 2 GPUs resumes on 1 (or on a CPU) and the other way round."""
    if not torch.cuda.is_available():
        return
    for index in range(min(len(states), torch.cuda.device_count())):
        torch.cuda.set_rng_state(states[index], index)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
