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
    ax.plot(thresholds, curves["chosen"], label=decision.describe().split(", ", 1)[-1] or "chosen")
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


def _contour(rgb: np.ndarray, mask: np.ndarray, color: tuple) -> None:
    import cv2
    contours, _ = cv2.findContours(np.pad(mask.astype(np.uint8), 1), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, color, 1, offset=(-1, -1))


def mosaic_rgb(layers: dict, scale: int) -> np.ndarray:
    """One mosaic's picture: test tiles tinted blue, pixels a rule added red and removed cyan, training masks
    outlined green, predicted masks yellow; `layers` hold canvases (image, is_test, truth, pred, added,
    removed; the last three may be None)."""
    up = lambda a: np.kron(a, np.ones((scale, scale), a.dtype)) if a is not None else None
    image, test = up(layers["image"]).astype(np.float32), up(layers["is_test"])
    rgb = np.repeat(image[..., None], 3, axis=2)
    rgb[test] *= np.array([0.78, 0.86, 1.0], np.float32)
    for key, color in (("added", (255, 40, 40)), ("removed", (0, 230, 255))):
        if layers.get(key) is not None:
            where = up(layers[key])
            rgb[where] = 0.45 * rgb[where] + 0.55 * np.array(color, np.float32)
    rgb = np.ascontiguousarray(rgb.clip(0, 255).astype(np.uint8))
    rgb[up(layers["empty"])] = (28, 28, 36)
    _contour(rgb, up(layers["truth"]), (60, 255, 60))
    if layers.get("pred") is not None:
        _contour(rgb, up(layers["pred"]), (255, 220, 0))
    return rgb


def mosaics(layout, images: dict, truth: dict, pred: dict | None, before: dict | None, paths: list[Path],
            title: str = "") -> None:
    """Pictures of the largest mosaics (those with salt in a training mask first), one per path: tiles in
    place, the training masks (`truth`: id -> mask) outlined green; with `pred` (id -> mask) the predicted
    masks yellow, and with `before` (the masks before the neighbour rules) the pixels the rules added red
    and removed cyan; `images`: id -> image."""
    from .mosaic import layers
    salty = layout.frame.assign(salt=[bool(truth[i].any()) if i in truth else False for i in layout.frame["id"]])
    ranks = salty.groupby("mosaic").agg(n=("id", "size"), salt=("salt", "any"))
    ranks = ranks[ranks["n"] > 1].sort_values(["salt", "n"], ascending=False, kind="stable")  # salt worth seeing first
    for path, (mosaic, n) in zip(paths, ranks["n"].items()):
        mosaic_picture(layers(layout, int(mosaic), images, truth, pred, before), path, (
            f"{title}mosaic {mosaic}: {n} tiles (blue tint: test; green: training mask"
            + ("; yellow: predicted mask" if pred is not None else "")
            + ("; red/cyan: pixels the neighbour rules added/removed" if before is not None else "") + ")"))


def mosaic_picture(layers: dict, path: Path, title: str) -> None:
    height, width = layers["image"].shape
    scale = 2 if max(height, width) <= 900 else 1
    rgb = mosaic_rgb(layers, scale)
    fig, ax = plt.subplots(figsize=(max(6.0, rgb.shape[1] / 90), max(3.0, rgb.shape[0] / 90) + 0.6))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_xticks(np.arange(0, rgb.shape[1] + 1, 101 * scale) - 0.5, [])
    ax.set_yticks(np.arange(0, rgb.shape[0] + 1, 101 * scale) - 0.5, [])
    ax.tick_params(length=0)
    ax.grid(color="white", alpha=0.12, linewidth=0.6)
    ax.set_title(title, fontsize=9)
    _save(fig, path)
