"""Writing the synthetic dataset: argument checks, the challenge's file layout, ``dataset.json``, the atomic
publication of the folder, and the cached default set."""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from nerveseg.bundle.data.synthetic.canvas import IMAGE_SHAPE
from nerveseg.bundle.data.synthetic.subject_sampling import STREAM_TEST, STREAM_TEST_ORDER, STREAM_TRAIN
from nerveseg.bundle.data.synthetic.subject_simulation import simulate_subject
from nerveseg.utils.files import atomic_path

__all__ = ["SYNTHETIC_VERSION", "default_dataset_dir", "generate_dataset"]

SYNTHETIC_VERSION: int = 1
"""Bumped whenever the generated files change; part of the cache folder name."""

_MIN_SIDE = 32
_TEST_FRAMES_PER_SUBJECT = 10


def _check_arguments(
    num_subjects: int, frames_per_subject: int, num_test_images: int, seed: int, image_shape: Sequence[int]
) -> tuple[int, int, int, int, tuple[int, int]]:
    """Validate and normalise the arguments of :func:`generate_dataset`."""
    try:
        num_subjects, frames_per_subject, num_test_images, seed = (
            operator.index(v) for v in (num_subjects, frames_per_subject, num_test_images, seed)
        )
    except TypeError as err:
        raise TypeError(
            "num_subjects, frames_per_subject, num_test_images and seed must be integers, got "
            f"{num_subjects!r}, {frames_per_subject!r}, {num_test_images!r}, {seed!r}."
        ) from err
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}.")
    if frames_per_subject < 2:
        raise ValueError(
            f"frames_per_subject must be >= 2 (each subject holds a positive and a negative run), got "
            f"{frames_per_subject}."
        )
    if num_test_images < 0:
        raise ValueError(f"num_test_images must be >= 0, got {num_test_images}.")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    try:
        shape = tuple(operator.index(v) for v in image_shape)
    except TypeError as err:
        raise ValueError(f"image_shape must be a pair of integers (H, W), got {image_shape!r}.") from err
    if len(shape) != 2 or min(shape) < _MIN_SIDE:
        raise ValueError(
            f"image_shape must be (H, W) with both sides >= {_MIN_SIDE}, got {tuple(image_shape)!r}; "
            f"use e.g. (64, 96) for tests or the default {IMAGE_SHAPE}."
        )
    return num_subjects, frames_per_subject, num_test_images, seed, (shape[0], shape[1])


def _save_tiff(array: np.ndarray, path: Path) -> None:
    """Write an ``[H, W]`` uint8 array as an uncompressed 8-bit grayscale (mode ``"L"``) TIFF."""
    Image.fromarray(array).save(path, format="TIFF", compression="raw")


def _write_train(
    train: Path, num_subjects: int, frames_per_subject: int, seed: int, shape: tuple[int, int]
) -> dict[str, object]:
    """Write ``train/{subject}_{frame}.tif`` and ``_mask.tif`` into ``train``; return their ``dataset.json``
    statistics."""
    areas: list[int] = []
    subject_rates: dict[str, float] = {}
    subject_targets: dict[str, float] = {}
    duplicates: list[dict[str, object]] = []
    num_positive = 0
    for index in range(1, num_subjects + 1):
        subject = simulate_subject(seed, STREAM_TRAIN, index, frames_per_subject, shape)
        positives = 0
        for frame, (image, mask) in enumerate(zip(subject.images, subject.masks, strict=True), start=1):
            _save_tiff(image, train / f"{index}_{frame}.tif")
            _save_tiff(mask, train / f"{index}_{frame}_mask.tif")
            area = int(np.count_nonzero(mask))
            if area:
                positives += 1
                areas.append(area)
        num_positive += positives
        subject_rates[str(index)] = round(positives / frames_per_subject, 4)
        subject_targets[str(index)] = round(subject.rate_target, 4)
        if subject.duplicate is not None:
            positive, negative = subject.duplicate
            duplicates.append(
                {"subject": index, "with_mask": f"{index}_{positive + 1}", "without_mask": f"{index}_{negative + 1}"}
            )
    num_frames = num_subjects * frames_per_subject
    return {
        "num_train_frames": num_frames,
        "num_positive": num_positive,
        "positive_rate": round(num_positive / num_frames, 4),
        "per_subject_positive_rate": subject_rates,
        "per_subject_target_rate": subject_targets,
        "mask_area_px": {
            "min": int(min(areas)) if areas else 0,
            "median": float(np.median(areas)) if areas else 0.0,
            "max": int(max(areas)) if areas else 0,
        },
        "duplicate_pairs": duplicates,
    }


def _write_test(test: Path, num_test_images: int, seed: int, shape: tuple[int, int]) -> None:
    """Write ``test/{id}.tif``: frames of separate test subjects, in a shuffled order."""
    test_images: list[np.ndarray] = []
    for group in range(1, math.ceil(num_test_images / _TEST_FRAMES_PER_SUBJECT) + 1):
        frames = simulate_subject(seed, STREAM_TEST, group, _TEST_FRAMES_PER_SUBJECT, shape, with_duplicate=False)
        test_images.extend(frames.images)
    order = np.random.default_rng([seed, STREAM_TEST_ORDER, 1]).permutation(num_test_images)
    for test_id, source in enumerate(order, start=1):
        _save_tiff(test_images[int(source)], test / f"{test_id}.tif")


def _write_dataset(
    root: Path, num_subjects: int, frames_per_subject: int, num_test_images: int, seed: int, shape: tuple[int, int]
) -> None:
    """Generate every file of the dataset into the (empty) folder ``root``."""
    train, test = root / "train", root / "test"
    train.mkdir()
    test.mkdir()
    train_statistics = _write_train(train, num_subjects, frames_per_subject, seed, shape)
    _write_test(test, num_test_images, seed, shape)
    summary = {
        "name": "synthetic ultrasound nerve segmentation",
        "generator": f"{__package__}.generate_dataset",  # the public name
        "synthetic_version": SYNTHETIC_VERSION,
        "parameters": {
            "num_subjects": num_subjects,
            "frames_per_subject": frames_per_subject,
            "num_test_images": num_test_images,
            "seed": seed,
            "image_shape": list(shape),
        },
        "layout": {
            "image": "train/{subject}_{frame}.tif",
            "mask": "train/{subject}_{frame}_mask.tif",
            "test": "test/{id}.tif",
            "format": "uncompressed TIFF, 8-bit grayscale (PIL mode L); masks 0/255",
            "width": shape[1],
            "height": shape[0],
        },
        **train_statistics,
        "num_test_images": num_test_images,
    }
    # a plain write: the whole folder is published atomically by generate_dataset
    (root / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _is_complete(folder: Path) -> bool:
    return (folder / "dataset.json").is_file()


def generate_dataset(
    out_dir: str | os.PathLike,
    num_subjects: int = 16,
    frames_per_subject: int = 30,
    num_test_images: int = 40,
    seed: int = 0,
    image_shape: tuple[int, int] = IMAGE_SHAPE,
) -> Path:
    """Write the synthetic dataset into ``out_dir`` (which must not exist or be empty) and return its path.

    The files are written into a temporary sibling folder that replaces ``out_dir`` only once complete
    (:func:`nerveseg.utils.files.atomic_path`), so an interrupted run never leaves a half-written ``out_dir``. If
    another process completes ``out_dir`` meanwhile, its result is kept and returned. The same arguments always give
    byte-identical files.

    Args:
        out_dir: destination folder; its parent is created if needed.
        num_subjects: number of training subjects ``S`` (>= 1); files ``train/{1..S}_{frame}.tif``.
        frames_per_subject: frames per subject ``F`` (>= 2), each with a ``_mask.tif``.
        num_test_images: unlabelled images ``test/{1..N}.tif`` (>= 0), drawn from separate subjects.
        seed: non-negative integer seed; subject ``k`` of seed ``seed`` is the same whatever ``num_subjects`` is.
        image_shape: ``(H, W)`` of every image, both >= 32; anatomy and nerve areas scale with the image area
            (the quoted areas are for the default ``(420, 580)``).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`, holding ``train/``, ``test/`` and ``dataset.json`` (parameters and
        statistics: positive rate, per-subject rates, mask-area range, conflicting duplicate pairs).

    Raises:
        ValueError: for an argument out of range.
        FileExistsError: when ``out_dir`` exists and is not an empty folder.
    """
    num_subjects, frames_per_subject, num_test_images, seed, shape = _check_arguments(
        num_subjects, frames_per_subject, num_test_images, seed, image_shape
    )
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"Cannot generate the synthetic dataset into {str(out_dir)!r}: it exists and is not an empty folder. "
            "Remove it or choose another out_dir."
        )
    try:
        with atomic_path(out_dir, replace=False) as staging:
            staging.mkdir()
            _write_dataset(staging, num_subjects, frames_per_subject, num_test_images, seed, shape)
    except FileExistsError:
        if not _is_complete(out_dir):
            raise
        # another process finished first: its identical result is kept, this one dropped
    return out_dir


def default_dataset_dir() -> Path:
    """Return the cached default dataset, generating it on first use (16 subjects x 30 frames, seed 0).

    The cache root is ``$NERVESEG_CACHE`` if set, else ``~/.cache/nerveseg``; the folder is
    ``f"synthetic-v{SYNTHETIC_VERSION}"`` inside it. An existing folder is returned at once. Concurrent first calls
    in separate processes are safe: each generates into its own temporary folder and the first to finish wins.

    Returns:
        The dataset folder (see :func:`generate_dataset`).
    """
    root = Path(os.environ.get("NERVESEG_CACHE") or Path.home() / ".cache" / "nerveseg").expanduser()
    folder = root / f"synthetic-v{SYNTHETIC_VERSION}"
    if _is_complete(folder):
        return folder
    return generate_dataset(folder)
