"""Choosing post-processing thresholds on the validation split, from the evaluation's per-image report."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GateChoice", "choose_gate_threshold", "gated_dice", "read_report", "write_override"]


@dataclass(frozen=True)
class GateChoice:
    """The chosen presence threshold and what it does on the images it was chosen on."""

    threshold: float
    mean_dice: float
    ungated_mean_dice: float
    gated_images: int
    gated_positives: int


def gated_dice(presence: np.ndarray, dice: np.ndarray, label_empty: np.ndarray, threshold: float) -> np.ndarray:
    """Per-image challenge Dice once masks with ``presence <= threshold`` are emptied.

    An emptied mask scores 1 on an empty label and 0 otherwise; a kept mask keeps the Dice it had.
    """
    gated = presence <= threshold
    return np.where(gated, label_empty.astype(float), dice)


def choose_gate_threshold(presence: Sequence[float], dice: Sequence[float], label_area: Sequence[int]) -> GateChoice:
    """The presence threshold that maximises the mean challenge Dice of ungated predictions.

    Only the order of the presence probabilities matters, so the candidates are 0 (keep every mask) and the
    midpoints between consecutive distinct probabilities (the last one gates every image); ties go to the lower
    threshold, which empties fewer masks.

    Args:
        presence: each image's presence probability.
        dice: each image's challenge Dice with its mask kept (evaluated with the gate open, threshold 0).
        label_area: each image's label area in pixels (0: no structure).
    """
    presence, dice = np.asarray(presence, dtype=float), np.asarray(dice, dtype=float)
    label_empty = np.asarray(label_area) == 0
    if not len(presence) == len(dice) == len(label_empty) > 0:
        raise ValueError(
            f"Need one presence, dice and label_area per image, got {len(presence)}, {len(dice)}, {len(label_empty)}."
        )
    levels = np.unique(presence)
    candidates = np.concatenate([[0.0], (levels[:-1] + levels[1:]) / 2, [(levels[-1] + 1.0) / 2]])
    scores = [gated_dice(presence, dice, label_empty, t).mean() for t in candidates]
    best = int(np.argmax(scores))
    threshold = float(candidates[best])
    gated = presence <= threshold
    return GateChoice(
        threshold=threshold,
        mean_dice=float(scores[best]),
        ungated_mean_dice=float(dice.mean()),
        gated_images=int(gated.sum()),
        gated_positives=int((gated & ~label_empty).sum()),
    )


def read_report(path: str | os.PathLike, column: str) -> dict[str, np.ndarray]:
    """Read the ``dice``, ``label_area`` and ``column`` columns of an evaluation's per-image CSV."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Evaluation report {path} does not exist; run the evaluating workflow first.")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows.")
    missing = {"dice", "label_area", column} - set(rows[0])
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; it has {', '.join(rows[0])}.")
    try:
        return {
            "dice": np.array([float(row["dice"]) for row in rows]),
            "label_area": np.array([int(row["label_area"]) for row in rows]),
            column: np.array([float(row[column]) for row in rows]),
        }
    except ValueError as error:
        raise ValueError(f"{path}: a value is not a number: {error}") from error


def write_override(path: str | os.PathLike, values: dict) -> Path:
    """Write a config override file (JSON) through a temporary name, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(values, indent=4) + "\n")
    os.replace(partial, path)
    return path
