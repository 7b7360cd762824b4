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


def outline(ax, mask: np.ndarray, color: str, width: float) -> None:
    """A mask's outline; padded by one empty pixel so that a mask reaching the border (or filling the
    image) is outlined along it too."""
    if mask.any():
        h, w = mask.shape
        ax.contour(np.arange(-1, w + 1), np.arange(-1, h + 1), np.pad(mask.astype(np.uint8), 1), levels=[0.5],
                   colors=color, linewidths=width)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)


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
        if truths is not None:
            outline(ax, truths[n], "lime", 1.2)
        outline(ax, preds[n], "red", 1.0)
        if captions:
            ax.set_title(captions[n], fontsize=7)
    fig.suptitle(title + ("  (green: truth, red: prediction)" if truths is not None else "  (red: prediction)"))
    _save(fig, path)


def error_overlays(images, truths, levels, masks, groups, captions, path: Path, title: str) -> None:
    """The worst images of each error kind, two rows per kind: the image with the truth (green) and the
    decision's mask (red), then the probability map (`levels`: uint8, 255 x p) with the same outlines."""
    columns = max([len(rows) for _, rows in groups] + [1])
    fig, axes = plt.subplots(2 * max(len(groups), 1), columns, figsize=(columns * 1.7, 3.6 * max(len(groups), 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for g, (kind, rows) in enumerate(groups):
        for c, i in enumerate(rows):
            top, bottom = axes[2 * g, c], axes[2 * g + 1, c]
            top.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            bottom.imshow(levels[i], cmap="magma", vmin=0, vmax=255)
            for ax in (top, bottom):
                outline(ax, truths[i], "lime", 1.1)
                outline(ax, masks[i], "red", 0.9)
            top.set_title(captions[i], fontsize=6.5)
        axes[2 * g, 0].text(-0.15, 0.5, kind.replace("_", " "), transform=axes[2 * g, 0].transAxes, rotation=90,
                            va="center", ha="right", fontsize=9)
    fig.suptitle(title + "  (green: truth, red: the decision's mask; lower row: probability)")
    _save(fig, path)


def coverage_bars(by_class: dict, path: Path, title: str) -> None:
    """mAP per coverage class (bars, with image counts) and the mAP points each class costs."""
    names = list(by_class)
    fig, (ax_score, ax_lost) = plt.subplots(1, 2, figsize=(12, 3.8))
    bars = ax_score.bar(names, [by_class[n]["score"] for n in names], color="steelblue")
    for bar, name in zip(bars, names):
        ax_score.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, by_class[name]["images"],
                      ha="center", fontsize=7)
    ax_score.set_ylim(0, 1.08)
    ax_score.set_title("out-of-fold mAP per coverage class (numbers: images)")
    ax_lost.bar(names, [by_class[n]["points"] for n in names], color="indianred")
    ax_lost.set_title("mAP points lost per class (sum = 1 - CV)")
    for ax in (ax_score, ax_lost):
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    _save(fig, path)
