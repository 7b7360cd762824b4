"""Pictures people would rather see than read: training curves, threshold curve, overlays."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .store import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def training_curves(log: pd.DataFrame, path: Path, title: str) -> None:
    fig, (ax_loss, ax_score, ax_lr) = plt.subplots(1, 3, figsize=(14, 3.8))
    ax_loss.plot(log["epoch"], log["train_loss"], label="train")
    ax_loss.plot(log["epoch"], log["val_bce"], label="validation (pixel BCE, TTA)")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_score.plot(log["epoch"], log["score_05"], label="at 0.5")
    ax_score.plot(log["epoch"], log["score_best"], label="tuned decision")
    ax_score.set_title("validation mAP (competition metric)")
    ax_score.legend()
    ax_lr.plot(log["epoch"], log["lr"])
    ax_lr.set_yscale("log")
    ax_lr.set_title("learning rate (end of epoch)")
    for ax in (ax_loss, ax_score, ax_lr):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def threshold_curve(thresholds, curves: dict, decision, path: Path, title: str) -> None:
    """mAP vs threshold without post-processing and with the chosen minimum area / head cut."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(thresholds, curves["plain"], label="threshold only")
    ax.plot(thresholds, curves["chosen"], label=f"min area {decision.min_area}, head cut {decision.empty_cut}")
    ax.axvline(decision.threshold, color="red", linestyle="--", label=f"chosen {decision.threshold:.3f}")
    ax.set_xlabel("threshold")
    ax.set_ylabel("out-of-fold mAP")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def overlays(images: np.ndarray, preds: np.ndarray, path: Path, title: str, truths: np.ndarray | None = None,
             captions: list[str] | None = None, columns: int = 8) -> None:
    """A grid of images with the predicted mask outlined in red and the true one (if any) in green."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.8, rows * 1.9), squeeze=False)
    for n, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if n >= len(images):
            continue
        ax.imshow(images[n], cmap="gray", vmin=0, vmax=255)
        if truths is not None and truths[n].any():
            ax.contour(truths[n], levels=[0.5], colors="lime", linewidths=1.2)
        if preds[n].any():
            ax.contour(preds[n], levels=[0.5], colors="red", linewidths=1.0)
        if captions:
            ax.set_title(captions[n], fontsize=7)
    fig.suptitle(title + ("  (green: truth, red: prediction)" if truths is not None else "  (red: prediction)"))
    _save(fig, path)
