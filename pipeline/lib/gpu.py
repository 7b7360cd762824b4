"""Can the installed torch run on this machine's GPUs? Asked once, before any CUDA work.

A torch wheel carries compiled kernels for some GPU architectures (`torch.cuda.get_arch_list()`: `sm_XY`
machine code, `compute_XY` PTX). A GPU of compute capability X.Z runs `sm_XY` code when Y <= Z (same major:
binary compatibility), and any `compute_XY` PTX with XY <= XZ (the driver compiles it: forward
compatibility); arch-specific builds (`sm_90a`) run on that exact capability only. Without any of these
`torch.cuda.is_available()` is still True and the first CUDA operation dies with "no kernel image is
available for execution on the device" -- as on Kaggle's retired P100 (sm_60) under the image's cu128 torch.
"""
from __future__ import annotations

import re

import torch

from .errors import PipelineError

ARCH = re.compile(r"^(sm|compute)_(\d+)([a-z]?)$")
KAGGLE_GPU = "NvidiaTeslaT4"  # GPU T4 x2 (sm_75): what `kernels push --accelerator` names it


def capability_of(number: int) -> tuple[int, int]:
    """'sm_75' -> 75 -> (7, 5); 'sm_100' -> (10, 0)."""
    return divmod(number, 10)


def runs_on(capability: tuple[int, int], archs: list[str]) -> bool:
    """Whether code built for `archs` runs on a GPU of `capability` (the rules above)."""
    for arch in archs:
        match = ARCH.match(arch)
        if not match:
            continue
        built = capability_of(int(match[2]))
        if match[3]:  # arch-specific features: that capability alone
            ok = built == capability
        elif match[1] == "compute":
            ok = built <= capability
        else:
            ok = built[0] == capability[0] and built[1] <= capability[1]
        if ok:
            return True
    return False


def refusal(index: int, name: str, capability: tuple[int, int], archs: list[str]) -> str:
    sm = f"sm_{capability[0]}{capability[1]}"
    return (f"GPU {index} ({name}, {sm}) cannot run this torch {torch.__version__}, which has kernels for "
            f"{', '.join(archs)} only; in a Kaggle kernel choose the accelerator GPU T4 x2 ({KAGGLE_GPU}: "
            f"`python -m pipeline.bundle --accelerator {KAGGLE_GPU}`), elsewhere install a torch built for {sm} "
            "or run on the CPU (CUDA_VISIBLE_DEVICES=)")


def check_gpus() -> int:
    """How many GPUs this process may use (0 without CUDA); one line naming the GPU, its capability,
    torch's architectures and the fix when torch has no kernels for one of them."""
    if not torch.cuda.is_available():
        return 0
    archs = torch.cuda.get_arch_list()
    count = torch.cuda.device_count()
    for index in range(count if archs else 0):  # no list: a build that does not say; let CUDA decide
        capability = tuple(torch.cuda.get_device_capability(index))
        if not runs_on(capability, archs):
            raise PipelineError(refusal(index, torch.cuda.get_device_name(index), capability, archs))
    return count
