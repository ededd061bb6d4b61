"""Choosing post-processing settings on the validation split: the presence gate, threshold and minimum area.

Pure maths over probability maps and labels; the evaluator handler
:class:`~nerveseg.bundle.handlers.PostprocessingSearch` collects them (``configs/tune.json``) and calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GATE_THRESHOLDS",
    "MIN_AREAS",
    "THRESHOLDS",
    "PostprocessingChoice",
    "choice_table",
    "choose_postprocessing",
    "grid_dice",
    "image_statistics",
]

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.2, 0.81, 0.05), 2))
"""Probability thresholds searched by default (0.5, the untuned default, is always added)."""
MIN_AREAS = (0, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000)
"""Minimum mask areas searched by default, in pixels at the label's resolution (2500 px was the nerve seed's)."""
GATE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
"""Presence-gate thresholds searched by default, when the network gives a presence probability."""


@dataclass(frozen=True)
class PostprocessingChoice:
    """Post-processing settings and the challenge mean Dice they give on the images they were tuned on."""

    threshold: float
    min_area: int
    gate_threshold: float
    mean_dice: float


def image_statistics(
    probabilities: Sequence[np.ndarray], labels: Sequence[np.ndarray], thresholds: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image and threshold: overlap and predicted area; per image: label area.

    Everything the challenge Dice of any (threshold, min_area, gate) setting needs, computed once.

    Returns:
        ``overlap [I, T]``, ``pred_area [I, T]`` and ``label_area [I]`` in pixels.
    """
    if len(probabilities) != len(labels) or not labels:
        raise ValueError(f"Need one label per probability map, got {len(probabilities)} and {len(labels)}.")
    overlap = np.zeros((len(labels), len(thresholds)), dtype=np.int64)
    pred_area = np.zeros_like(overlap)
    label_area = np.zeros(len(labels), dtype=np.int64)
    for i, (probability, label) in enumerate(zip(probabilities, labels, strict=True)):
        probability = np.asarray(probability)
        probability = probability / np.float32(255) if probability.dtype == np.uint8 else probability.astype(np.float32)
        label = np.asarray(label) > 0
        if probability.shape != label.shape:
            raise ValueError(f"Image {i}: probability map {probability.shape} and label {label.shape} differ.")
        label_area[i] = np.count_nonzero(label)
        for j, threshold in enumerate(thresholds):
            mask = probability > threshold
            overlap[i, j] = np.count_nonzero(mask & label)
            pred_area[i, j] = np.count_nonzero(mask)
    return overlap, pred_area, label_area


def grid_dice(
    overlap: np.ndarray,
    pred_area: np.ndarray,
    label_area: np.ndarray,
    min_areas: Sequence[int],
    presence: np.ndarray | None = None,
    gate_thresholds: Sequence[float] = (0.0,),
) -> np.ndarray:
    """Challenge mean Dice for every (threshold, min_area, gate) setting: ``[T, A, G]``.

    A mask is emptied when its area is at most ``min_area`` or its image's presence probability is at most the
    gate threshold; an emptied mask scores 1 on an empty label and 0 otherwise.
    """
    label_empty = label_area == 0
    kept_dice = np.where(
        pred_area + label_area[:, None] == 0, 1.0, 2 * overlap / np.maximum(pred_area + label_area[:, None], 1)
    )  # [I, T]
    scores = np.zeros((pred_area.shape[1], len(min_areas), len(gate_thresholds)))
    for a, min_area in enumerate(min_areas):
        small = pred_area <= min_area  # [I, T]
        for g, gate in enumerate(gate_thresholds):
            gated = np.zeros(len(label_area), bool) if presence is None else np.asarray(presence) <= gate
            emptied = small | gated[:, None]
            scores[:, a, g] = np.where(emptied, label_empty[:, None].astype(float), kept_dice).mean(axis=0)
    return scores


def choose_postprocessing(
    probabilities: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    presence: Sequence[float] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    min_areas: Sequence[int] = MIN_AREAS,
    gate_thresholds: Sequence[float] = GATE_THRESHOLDS,
) -> tuple[PostprocessingChoice, PostprocessingChoice]:
    """The (threshold, min_area, gate) setting with the best challenge mean Dice, and the untuned default's score.

    Ties go to the first setting in grid order (lowest threshold, then lowest min_area, then lowest gate). The
    score is measured on the images tuned on, so it flatters the setting; confirm it on held-out data.

    Args:
        probabilities: per image, the foreground probability at the label's resolution (after the resize is
            inverted, before thresholding).
        labels: per image, the binary label.
        presence: per image, a classifier's presence probability; ``None`` leaves the gate out of the search.
        thresholds: probability thresholds to try.
        min_areas: minimum total mask areas (pixels at the label's resolution) to try; 0 keeps every mask.
        gate_thresholds: presence thresholds to try when ``presence`` is given; 0 keeps every mask.

    Returns:
        the best setting and the default one (threshold 0.5, no minimum area, no gate).
    """
    thresholds = sorted({*thresholds, 0.5})
    gates = tuple(gate_thresholds) if presence is not None else (0.0,)
    min_areas = sorted({*min_areas, 0})
    overlap, pred_area, label_area = image_statistics(probabilities, labels, thresholds)
    scores = grid_dice(
        overlap, pred_area, label_area, min_areas, None if presence is None else np.asarray(presence), gates
    )
    t, a, g = np.unravel_index(int(np.argmax(scores)), scores.shape)
    best = PostprocessingChoice(float(thresholds[t]), int(min_areas[a]), float(gates[g]), float(scores[t, a, g]))
    default_index = thresholds.index(0.5)
    default = PostprocessingChoice(0.5, 0, 0.0, float(scores[default_index, 0, 0]))
    return best, default


def choice_table(best: PostprocessingChoice, default: PostprocessingChoice) -> str:
    """The default and the tuned setting side by side, one row each, as a fixed-width text table."""
    lines = [f"{'setting':<10}{'threshold':>10}{'min_area':>10}{'gate':>7}{'mean Dice':>11}"]
    for name, choice in (("default", default), ("tuned", best)):
        lines.append(
            f"{name:<10}{choice.threshold:>10.2f}{choice.min_area:>10}{choice.gate_threshold:>7.2f}"
            f"{choice.mean_dice:>11.4f}"
        )
    return "\n".join(lines)
