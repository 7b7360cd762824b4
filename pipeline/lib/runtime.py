"""Device, precision, optimisers and random state: what the stages that run models share."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from . import names
from .distributed import Rank
from .names import implemented

OPTIMIZERS = implemented(names.OPTIMIZERS, {  # name -> (params, train section) -> optimizer
    "adam": lambda params, t: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay),
    "adamw": lambda params, t: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                                             nesterov=True),
})
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}  # a resolved precision's autocast type
BF16_CAPABILITY = 8  # torch sends bf16 convolutions to cuDNN's tensor cores from Ampere (8.0) on only


def pick_device() -> torch.device:
    """This process's GPU (its local rank's under torchrun), else the CPU."""
    return Rank.from_env().device()


def flush_denormals() -> bool:
    """Treat subnormal floats (below 1.2e-38) as zero on the CPU. Trained weights can push activations into
    that range, where x86 arithmetic is many times slower: a Lite0 fold trained at batch 16 stepped at half
    speed from its tenth epoch on (docs/results.md). Torch's worker threads inherit the setting from the
    thread that starts them, so it is made before any model runs. False where the CPU cannot."""
    return torch.set_flush_denormal(True)


def has_amx() -> bool:
    """Whether the CPU has AMX tiles, where oneDNN runs bf16 convolutions in hardware (without them bf16
    is emulated and slower than float32). A private torch probe, absent from some versions: then no."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe())
    except RuntimeError:
        return False


@dataclass(frozen=True)
class Precision:
    """The one answer to "which precision" on a device: bf16, fp16 (with a grad scaler) or none (float32).
    Training and prediction ask with their own settings (`training`, `inference`); callers keep the answer."""

    name: str
    device_type: str

    @classmethod
    def training(cls, amp: str, device: torch.device) -> "Precision":
        """Mixed on a GPU as `amp` names it, auto resolved: bf16 on compute capability 8.0 and newer, fp16
        below (Kaggle's T4 is 7.5, its P100 6.0: bf16 only emulated). CPUs train in float32 (bf16 slowed
        the CPU recipe's training: docs/results.md)."""
        if device.type != "cuda":
            return cls("none", device.type)
        if amp == "auto":
            amp = "bf16" if torch.cuda.get_device_capability(device)[0] >= BF16_CAPABILITY else "fp16"
        return cls(amp, device.type)

    @classmethod
    def inference(cls, amp: str, cpu_precision: str, device: torch.device) -> "Precision":
        """A GPU predicts as it trains; a CPU in bf16 when `cpu_precision` is bf16, or auto on a CPU with AMX
        tiles (there 1.8-2x float32's speed for the CPU recipe at the same mAP: docs/results.md), else float32."""
        if device.type == "cuda":
            return cls.training(amp, device)
        return cls("bf16" if cpu_precision == "bf16" or (cpu_precision == "auto" and has_amx()) else "none", "cpu")

    @property
    def scaled(self) -> bool:
        """Whether the loss is scaled (fp16's narrow range underflows small gradients)."""
        return self.name == "fp16"

    def autocast(self):
        dtype = DTYPES[self.name]
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    def __str__(self) -> str:
        return self.name


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
    """Every random state, in types torch's safe loader (weights_only) reads: tensors, numbers, strings."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate(),
             "loader": loader_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, loader_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    if isinstance(saved, dict):  # a tuple in checkpoints of earlier versions
        saved = (saved["name"], saved["keys"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                 saved["cached_gaussian"])
    np.random.set_state(saved)
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


CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's reproducible workspace setting (CUDA's documentation)


def set_deterministic(on: bool) -> None:
    """`train.deterministic`: every kernel deterministic (torch raises on one that is not), no cuDNN
    autotuning (its choice can differ run to run), cuBLAS with a fixed workspace. Seeds and seeded loader
    workers are always set. Off: cuDNN may autotune (the default on GPUs)."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
