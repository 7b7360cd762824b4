"""Inference copies of a network with every BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a per-channel scale and shift, which the preceding convolution can absorb
(its weights scaled, its bias shifted): one pass over the activations less per BatchNorm, the same
function up to float rounding. Pairs are found by registration order (conv, then its BatchNorm, as smp's
and timm's blocks register them); `folded` checks the copy against the original on a probe input and
keeps the original when they differ, so a network that registers modules out of data-flow order is slower,
never wrong.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

TOLERANCE = 1e-3  # of the output's scale: float32 rounding of folded weights grows with the logits (MAnet,
# seeded: 2.7e-3 where the largest logit is 16.8), so the check scales with the output


def after_fold(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a BatchNorm once its affine map is in the conv: timm's BatchNormAct2d keeps its
    dropout and activation."""
    rest = [module for module in (getattr(bn, "drop", None), getattr(bn, "act", None)) if module is not None]
    return nn.Sequential(*rest) if rest else nn.Identity()


def fold_in_place(model: nn.Module) -> int:
    """Fold each Conv2d -> BatchNorm2d pair of `model` (in eval mode); returns how many were folded."""
    parents = dict(model.named_modules())
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())
              or isinstance(module, nn.BatchNorm2d)]
    count, previous = 0, None
    for name, module in leaves:
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, tuple) and \
                previous[1].out_channels == module.num_features and module.track_running_stats:
            conv_name, conv = previous
            set_child(parents, conv_name, fuse_conv_bn_eval(conv, module))
            set_child(parents, name, after_fold(module))
            count += 1
            previous = None
            continue
        previous = (name, module) if isinstance(module, nn.Conv2d) else None
    return count


def set_child(modules: dict, qualified: str, new: nn.Module) -> None:
    parent, _, child = qualified.rpartition(".")
    setattr(modules[parent], child, new)


@torch.no_grad()
def close(want: torch.Tensor, got: torch.Tensor) -> bool:
    """Equal up to float rounding: the largest difference within TOLERANCE of the output's scale."""
    return float((want - got).abs().max()) <= TOLERANCE * max(1.0, float(want.abs().max()))


def folded(model: nn.Module, probe: torch.Tensor) -> nn.Module:
    """An eval-mode copy of `model` with its BatchNorms folded, or `model` itself when folding would
    change its output on `probe`."""
    model.eval()
    copied = copy.deepcopy(model)
    if fold_in_place(copied) == 0:
        return model
    want, got = model(probe), copied(probe)
    same = all(a is None and b is None or close(a, b) for a, b in zip(want, got))
    return copied if same else model
