"""Choosing post-processing settings on the validation split: the presence gate, threshold and minimum area."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.engines.utils import IterationEvents

from nerveseg.bundle.files import write_text_atomically
from nerveseg.networks.outputs import class_logits_of

__all__ = [
    "PostprocessingChoice",
    "choose_postprocessing",
    "grid_dice",
    "image_statistics",
    "validation_probabilities",
    "write_override",
]


def write_override(path: str | os.PathLike, values: dict) -> Path:
    """Write a config override file (JSON) through a temporary name, so a reader never sees half a file."""
    return write_text_atomically(path, json.dumps(values, indent=4) + "\n")


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
    thresholds: Sequence[float] = tuple(np.round(np.arange(0.2, 0.81, 0.05), 2)),
    min_areas: Sequence[int] = (0, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000),
    gate_thresholds: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
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


def validation_probabilities(
    config_file: Sequence[str], overrides: Mapping[str, object] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], list[float] | None]:
    """Run an evaluation config and keep, per validation image, the probability map, the label and the presence.

    The config's ``probability_transforms`` (sigmoid, inversion of the resize) run with the gate open; its
    ``mask_transforms`` and report do not, so nothing in ``outputs/eval`` is overwritten. Probabilities are kept as
    8-bit (steps of 1/255) to hold a whole validation split in memory.

    Args:
        config_file: the stacked configs of an evaluation, e.g. train.json, evaluate.json and asme.json.
        overrides: config ids and values, as on the ``monai.bundle`` command line.

    Returns:
        probability maps (uint8, 0-255), labels (bool) and, when the network gives one class logit, presence
        probabilities, per image.
    """
    parser = ConfigParser()
    parser.read_config(list(config_file))
    for key, value in (overrides or {}).items():
        parser[key] = value
    if "probability_transforms" not in parser:
        raise ValueError(f"{list(config_file)} has no 'probability_transforms'; stack configs/evaluate.json.")
    parser["gate_threshold"] = 0.0
    parser["validate#postprocessing"] = {"_target_": "Compose", "transforms": "$@probability_transforms"}
    parser["validate#handlers"] = [h for h in parser["validate#handlers"] if h.get("_target_") == "CheckpointLoader"]
    parser["validate#evaluator#key_val_metric"] = None
    parser.get_parsed_content("initialize")
    evaluator = parser.get_parsed_content("validate#evaluator")

    probabilities, labels, presence, batch_presence = [], [], [], []

    def keep_presence(engine) -> None:
        logits = class_logits_of(engine.state.output["pred"])
        batch_presence[:] = (
            [] if logits is None or logits.shape[-1] != 1 else torch.sigmoid(logits.float()).flatten().tolist()
        )

    def keep_maps(engine) -> None:
        for index, sample in enumerate(engine.state.output):
            probability = torch.as_tensor(sample["pred"]).float().cpu().numpy()[0]
            probabilities.append(np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8))
            labels.append(torch.as_tensor(sample["label"]).cpu().numpy()[0] > 0)
            if batch_presence:
                presence.append(batch_presence[index])

    evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED, keep_presence)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, keep_maps)
    evaluator.run()
    return probabilities, labels, presence if len(presence) == len(labels) else None
