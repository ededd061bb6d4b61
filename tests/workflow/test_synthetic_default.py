"""The Quick start's default synthetic set, generated whole (16 subjects x 30 frames at 420 x 580): the challenge's
rates, mask areas, spread, temporal coherence and masks on the drawn nerve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from nerveseg.bundle.data.synthetic import IMAGE_SHAPE, generate_dataset

pytestmark = pytest.mark.slow  # about 7 s idle, several times that on a busy machine


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_default_parameters_statistics(tmp_path):
    """The full default set (16 x 30 frames, 420 x 580): rates, areas, spread, temporal coherence, alignment."""
    root = generate_dataset(tmp_path / "default")

    info = json.loads((root / "dataset.json").read_text())
    assert info["num_train_frames"] == 480 and info["num_test_images"] == 40
    assert 0.37 <= info["positive_rate"] <= 0.45, info["positive_rate"]
    rates = list(info["per_subject_positive_rate"].values())
    assert min(rates) < 0.15 and max(rates) > 0.7, rates
    assert 2600 <= info["mask_area_px"]["min"] and info["mask_area_px"]["max"] <= 17500, info["mask_area_px"]
    assert 5000 <= info["mask_area_px"]["median"] <= 9000, info["mask_area_px"]
    assert 2 <= len(info["duplicate_pairs"]) <= 8, info["duplicate_pairs"]

    images = {}
    for subject in range(1, 17):
        for frame in range(1, 31):
            images[subject, frame] = _load(root / "train" / f"{subject}_{frame}.tif").astype(np.float32)
    assert next(iter(images.values())).shape == IMAGE_SHAPE
    consecutive = np.mean([np.abs(images[s, f] - images[s, f + 1]).mean() for s in range(1, 17) for f in range(1, 30)])
    rng = np.random.default_rng(0)
    across = np.mean(
        [
            np.abs(images[s, int(rng.integers(1, 31))] - images[s % 16 + 1, int(rng.integers(1, 31))]).mean()
            for s in range(1, 17)
        ]
    )
    assert consecutive < 0.35 * across, (consecutive, across)

    # the mask sits on the drawn nerve: brighter inside than in a ring just outside, for most positive frames
    brighter = []
    for subject in range(1, 17):
        for frame in range(1, 31):
            mask = _load(root / "train" / f"{subject}_{frame}_mask.tif") > 0
            if mask.any():
                ring = ndimage.binary_dilation(mask, iterations=12) & ~ndimage.binary_dilation(mask, iterations=4)
                brighter.append(images[subject, frame][mask].mean() > images[subject, frame][ring].mean())
    assert np.mean(brighter) > 0.8, np.mean(brighter)
