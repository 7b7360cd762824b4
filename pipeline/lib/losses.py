"""Segmentation losses by name. Each takes logits and a 0/1 target of shape (N, 1, H, W), and optionally
which images count (`weight`, (N,) of 0/1): the loss is then that of the counted images alone, computed
without selecting them, so no GPU-to-host sync is needed (deep supervision counts images with salt)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import names
from .names import implemented


def weighted_mean(per_image: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_image.mean()
    return (per_image * weight).sum() / weight.sum().clamp_min(1)  # no image counted: 0


def bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    per_image = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return weighted_mean(per_image, weight)


def dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
         smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice over the (counted images of the) batch: 1 - (2|P∩T| + s) / (|P| + |T| + s)."""
    probs = torch.sigmoid(logits)
    if weight is not None:
        probs, target = probs * weight.view(-1, 1, 1, 1), target * weight.view(-1, 1, 1, 1)
    inter = (probs * target).sum()
    return 1 - (2 * inter + smooth) / (probs.sum() + target.sum() + smooth)


def lovasz(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, hinge=F.relu) -> torch.Tensor:
    """Per-image Lovasz hinge (Berman et al. 2018), averaged over the batch; `hinge` is applied to the
    sorted errors (ReLU in the paper).

    All images are sorted and scanned at once (one batched sort and cumsum), not in a Python loop.
    """
    logits, labels = logits.float().flatten(1), target.float().flatten(1)
    errors = 1 - logits * (2 * labels - 1)
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    gt_sorted = torch.gather(labels, 1, perm)
    gts = gt_sorted.sum(1, keepdim=True)
    jaccard = 1 - (gts - gt_sorted.cumsum(1)) / (gts + (1 - gt_sorted).cumsum(1))
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)  # Lovasz extension's gradient
    return weighted_mean((hinge(errors_sorted) * grad).sum(1), weight)


def lovasz_symmetric(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                     hinge=F.relu) -> torch.Tensor:
    """Mean of the Lovasz hinge on the logits and on the negated logits with inverted targets."""
    return (lovasz(logits, target, weight, hinge) + lovasz(-logits, 1 - target, weight, hinge)) / 2


def elu_plus_one(errors: torch.Tensor) -> torch.Tensor:
    """A smooth hinge: pixels already right by a margin still pull a little, so gradients never vanish
    (the 14th place's and others' Lovasz variant)."""
    return F.elu(errors) + 1


def lovasz_elu(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    return lovasz(logits, target, weight, elu_plus_one)


def lovasz_symmetric_elu(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    return lovasz_symmetric(logits, target, weight, elu_plus_one)


def focal(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
          gamma: float = 2.0) -> torch.Tensor:
    logp = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return weighted_mean((-((1 - logp.exp()) ** gamma) * logp).flatten(1).mean(1), weight)


LOSSES = implemented(names.LOSSES, {"bce": bce, "dice": dice, "lovasz": lovasz, "lovasz_symmetric": lovasz_symmetric,
                                    "focal": focal, "lovasz_elu": lovasz_elu,
                                    "lovasz_symmetric_elu": lovasz_symmetric_elu})


def make_loss(terms: dict):
    """A weighted sum of registered losses, e.g. {"bce": 1, "dice": 1} (names checked by the config)."""
    parts = [(LOSSES[name], float(weight)) for name, weight in terms.items()]

    def loss(logits, target, images=None):
        """`images`: which images count, (N,) of 0/1 (all when None)."""
        return sum(weight * fn(logits, target, images) for fn, weight in parts)

    loss.name = "+".join(f"{w:g}*{n}" for n, w in terms.items())
    return loss


def empty_head_loss(head_logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE of the image-level head against "this mask has salt"."""
    has_salt = (target.flatten(1).amax(1) > 0).float()
    return F.binary_cross_entropy_with_logits(head_logit.flatten().float(), has_salt)
