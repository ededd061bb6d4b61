"""How the benchmarks score and compare: the images a split is scored on, the challenge Dice at the label's size,
each validation's Dice of a training run, and paired intervals and verdicts.

Two systems scored on the same test images by several seeds differ by noise of two kinds: which images happen to
be in the test split, and which seed trained each network. :func:`paired_bootstrap` counts both. It resamples
seeds, then images, and keeps the pairing: each resample takes the same images and seeds from both systems.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigWorkflow
from monai.handlers import MetricLogger
from monai.utils import convert_to_tensor

from nerveseg.bundle.metrics import image_scores
from nerveseg.bundle.runs import config_files, read_config

__all__ = [
    "KEY_METRIC",
    "MARGIN",
    "dice_at_label_size",
    "interval_sources",
    "paired_bootstrap",
    "record_validations",
    "split_pairs",
    "validation_dice",
    "validation_dice_of_events",
    "verdict",
]

MARGIN = 0.02
"""The smallest mean Dice difference called a win or a loss."""

KEY_METRIC = "val_mean_dice"
"""train.json's validation metric."""


def record_validations(history: MetricLogger) -> Callable[[ConfigWorkflow], None]:
    """The ``before_run`` of :func:`nerveseg.bundle.runs.train` that has ``history`` record the metrics of each run
    of train.json's evaluator, read from its state (each epoch's validation, then SWA's where it is on)."""
    return lambda workflow: history.attach_evaluator(workflow.parser.get_parsed_content("validate#evaluator"))


def validation_dice(history: MetricLogger) -> list[float]:
    """The validation mean Dice ``history`` recorded, in order, to four places as train.log shows them."""
    return [round(float(value), 4) for _, value in history.metrics.get(KEY_METRIC, [])]


def validation_dice_of_events(output_dir: str | os.PathLike) -> list[float]:
    """Each epoch's validation mean Dice of a training run in another process, read from the TensorBoard events
    train.json writes in ``output_dir`` (its ``TensorBoardStatsHandler``), by epoch, to four places; SWA's own
    validation is left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    by_epoch: dict[int, float] = {}
    for events in sorted(Path(output_dir).glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if KEY_METRIC in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(KEY_METRIC):  # SWA's validation comes after, at the last epoch's step
                by_epoch.setdefault(event.step, round(event.value, 4))
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def split_pairs(
    bundle_root: str | os.PathLike,
    datalist_file: str | os.PathLike,
    image_size: Sequence[int],
    split: str = "validation",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(image, label)`` pairs of a datalist's split, read by evaluate.json's preprocessing.

    Args:
        bundle_root: the bundle folder holding ``configs/``.
        datalist_file: a datalist prepared by ``nerveseg prepare``.
        image_size: the network's input size ``[H, W]``.
        split: the datalist's split.

    Returns:
        per image, the ``[1, H, W]`` image at ``image_size`` and its binary ``[1, H', W']`` label at the original
        size, as :func:`~.asme_timing.asme_dice_cost_curve` and the league take them.
    """
    overrides = {
        "bundle_root": str(bundle_root),
        "datalist_file": str(datalist_file),
        "image_size": list(image_size),
        "eval_split": split,
    }
    parser = read_config(config_files(bundle_root, "configs/train.json", "configs/evaluate.json"), overrides)
    items = parser.get_parsed_content("validate#dataset")
    return [tuple(convert_to_tensor(item[key], track_meta=False) for key in ("image", "label")) for item in items]


def dice_at_label_size(
    probabilities: Sequence[torch.Tensor], labels: Sequence[np.ndarray], threshold: float = 0.5
) -> list[float]:
    """The challenge Dice of each ``[H, W]`` probability map, resized bilinearly to its label's ``[H', W']`` (or
    ``[1, H', W']``) size, as evaluate.json inverts the resize, and thresholded; an empty prediction on an empty
    label scores 1."""
    dice = []
    for probability, label in zip(probabilities, labels, strict=True):
        probability = torch.as_tensor(probability).float()[None, None]
        if tuple(probability.shape[-2:]) != label.shape[-2:]:
            probability = F.interpolate(probability, size=label.shape[-2:], mode="bilinear", align_corners=False)
        prediction = np.asarray(probability[0, 0].cpu()) > threshold
        dice.append(float(image_scores(prediction.reshape(label.shape), label)["dice"]))
    return dice


def paired_bootstrap(
    differences: np.ndarray | Sequence[Sequence[float]], resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """The mean of per-image Dice differences and its 95% percentile interval from a two-level bootstrap.

    Args:
        differences: ``[seeds, images]``: system A's Dice minus system B's, for the same seed and test image.
        resamples: bootstrap resamples; each draws seeds with replacement, then images with replacement, and
            averages the differences of every drawn seed on every drawn image.
        seed: the generator's seed, so that the same rows give the same interval.

    Returns:
        ``(mean, low, high)``; with one seed only the images are resampled.
    """
    values = _as_seeds_by_images(differences)
    means = _bootstrap_means(values, resamples, seed, resample_seeds=True, resample_images=True)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def interval_sources(
    differences: np.ndarray | Sequence[Sequence[float]], resamples: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Half the width of :func:`paired_bootstrap`'s 95% interval with only the seeds resampled (the images kept),
    and with only the images resampled (the seeds kept): whether more seeds or more images would narrow it.

    Args:
        differences: ``[seeds, images]``, as for :func:`paired_bootstrap`.
        resamples: bootstrap resamples per level.
        seed: the generator's seed.

    Returns:
        ``{"seeds": half-width, "images": half-width}``; with one seed, the seeds' half-width is 0.
    """
    values = _as_seeds_by_images(differences)
    half_width = {}
    for level in ("seeds", "images"):
        means = _bootstrap_means(
            values, resamples, seed, resample_seeds=level == "seeds", resample_images=level == "images"
        )
        low, high = np.percentile(means, [2.5, 97.5])
        half_width[level] = float(high - low) / 2
    return half_width


def _as_seeds_by_images(differences: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``differences`` as a float64 ``[seeds, images]`` array; a ValueError for any other shape or none at all."""
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"differences must be [seeds, images] and not empty, got shape {values.shape}.")
    return values


def _bootstrap_means(
    values: np.ndarray, resamples: int, seed: int, *, resample_seeds: bool, resample_images: bool
) -> np.ndarray:
    """Means of ``resamples`` draws of ``values`` ``[seeds, images]``, the seeds and/or the images drawn with
    replacement (a level not drawn is kept whole)."""
    generator = np.random.default_rng(seed)
    num_seeds, num_images = values.shape
    every_seed, every_image = np.arange(num_seeds)[None, :, None], np.arange(num_images)[None, None]
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # in chunks: seeds x images x 1000 floats at a time
        count = min(1000, resamples - start)
        seeds = generator.integers(0, num_seeds, size=(count, num_seeds, 1)) if resample_seeds else every_seed
        images = generator.integers(0, num_images, size=(count, 1, num_images)) if resample_images else every_image
        means[start : start + count] = values[seeds, images].mean(axis=(1, 2))
    return means


def verdict(mean: float, low: float, high: float, margin: float = MARGIN) -> str:
    """``"win"`` when the difference is at least ``margin`` and its interval lies above 0, ``"loss"`` when the
    reverse holds, else ``"tie"``."""
    if mean >= margin and low > 0:
        return "win"
    if mean <= -margin and high < 0:
        return "loss"
    return "tie"
