"""Evaluation figures: Dice histogram, the worst cases with overlays, ensemble consistency against Dice."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: evaluation runs on servers without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nerveseg.utils.files import atomic_path  # noqa: E402

__all__ = ["consistency_vs_dice", "dice_histogram", "learning_curves", "worst_cases"]


def _save(figure, path: str | os.PathLike) -> Path:
    try:
        with atomic_path(path) as partial:
            figure.savefig(partial, dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)
    return Path(path)


def dice_histogram(dice: Sequence[float], path: str | os.PathLike, title: str = "") -> Path:
    """Histogram of per-image Dice in 20 bins over [0, 1], with the mean marked."""
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.hist(dice, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
    axis.axvline(float(np.mean(dice)), color="tab:red", label=f"mean {np.mean(dice):.3f}")
    axis.set(xlabel="Dice per image", ylabel="images", title=title or f"{len(dice)} images")
    axis.legend()
    return _save(figure, path)


def worst_cases(
    cases: Sequence[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]], path: str | os.PathLike, per_row: int = 4
) -> Path:
    """A grid of ``(id, dice, image, label, pred)`` cases: image in gray, label outline green, prediction red."""
    if not cases:
        raise ValueError("No cases to draw.")
    rows = -(-len(cases) // per_row)
    figure, axes = plt.subplots(rows, per_row, figsize=(3 * per_row, 3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (case, dice, image, label, pred) in zip(axes.flat, cases, strict=False):
        axis.imshow(np.asarray(image), cmap="gray")
        if np.any(label):
            axis.contour(np.asarray(label) > 0, levels=[0.5], colors="lime", linewidths=1)
        if np.any(pred):
            axis.contour(np.asarray(pred) > 0, levels=[0.5], colors="red", linewidths=1)
        axis.set_title(f"{case}: Dice {dice:.2f}", fontsize=9)
    return _save(figure, path)


def consistency_vs_dice(
    consistency: Sequence[float], dice: Sequence[float], path: str | os.PathLike, rho: float | None = None
) -> Path:
    """Scatter of each image's ensemble consistency (mean pairwise Dice of the views) against its Dice."""
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.scatter(consistency, dice, s=12, alpha=0.7)
    axis.set(xlabel="ASME consistency (mean pairwise Dice of views)", ylabel="Dice", xlim=(-0.02, 1.02))
    axis.set(ylim=(-0.02, 1.02), title="" if rho is None else f"Spearman rho {rho:.2f}")
    return _save(figure, path)


def learning_curves(
    curves: dict[str, dict[float, Sequence[float]]],
    path: str | os.PathLike,
    xlabel: str = "labelled images",
    ylabel: str = "mean Dice",
    title: str = "",
) -> Path:
    """One line per curve: the mean over repeats at each x, with a band of one standard deviation.

    Args:
        curves: name to ``{x: [values of every repeat]}``.
        path: the PNG to write.
        xlabel: x-axis label.
        ylabel: y-axis label.
        title: figure title.
    """
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for name, curve in curves.items():
        xs = sorted(curve)
        means = np.array([np.mean(curve[x]) for x in xs])
        sds = np.array([np.std(curve[x], ddof=1) if len(curve[x]) > 1 else 0.0 for x in xs])
        repeats = max(len(curve[x]) for x in xs) if xs else 0
        (line,) = axis.plot(xs, means, marker="o", label=f"{name} (n={repeats})")
        axis.fill_between(xs, means - sds, means + sds, color=line.get_color(), alpha=0.2)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)
