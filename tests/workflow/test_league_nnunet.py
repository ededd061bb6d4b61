"""The league's nnU-Net system: the raw data set it writes, its checks, and one tiny run of nnU-Net end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("nnunetv2", reason="nnU-Net v2 comes with the benchmark extra: pip install -e '.[benchmark]'")

from nerveseg.scripts.bench.league_nnunet import DATASET, nnunet_probabilities  # noqa: E402


def _disk_cases(count: int, shape: tuple[int, int], seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Noisy images with a bright disk, and the disk as their mask."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    images, masks = [], []
    for _ in range(count):
        row, column = rng.uniform(0.35, 0.65, 2) * shape
        mask = (rows - row) ** 2 + (columns - column) ** 2 < (0.15 * min(shape)) ** 2
        images.append(np.clip(0.3 + 0.1 * rng.standard_normal(shape) + 0.5 * mask, 0, 1).astype(np.float32))
        masks.append(mask.astype(np.uint8))
    return images, masks


def test_the_subprocess_module_imports_neither_monai_nor_torch():
    # nnU-Net's planning and preprocessing spawn workers that import it again: MONAI took 7 s of each
    code = "import sys, nerveseg.scripts.bench.league_nnunet; print(sorted({'monai', 'torch'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_bad_inputs_are_refused_before_nnunet_starts(tmp_path):
    images, masks = _disk_cases(2, (32, 32), seed=0)
    with pytest.raises(ValueError, match="one mask per training image"):
        nnunet_probabilities(images, masks[:1], images, tmp_path / "a", num_epochs=1, images_per_epoch=1)
    with pytest.raises(ValueError, match="masks of 0 and 1"):
        nnunet_probabilities(images, [m * 255 for m in masks], images, tmp_path / "b", 1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        nnunet_probabilities(images, masks, images, tmp_path / "c", num_epochs=0, images_per_epoch=1)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").touch()
    with pytest.raises(ValueError, match="not empty"):
        nnunet_probabilities(images, masks, images, tmp_path / "d", 1, 1)


def test_a_subprocess_past_its_timeout_is_stopped_and_its_step_named(tmp_path):
    images, masks = _disk_cases(2, (32, 32), seed=0)
    step = r"(starting|fingerprinting, planning and preprocessing)"  # importing torch alone takes over a second
    with pytest.raises(RuntimeError, match=rf"ran past 1 s while {step} and was stopped; its logs and folders"):
        nnunet_probabilities(images, masks, images, tmp_path, num_epochs=1, images_per_epoch=1, timeout_s=1)


@pytest.mark.slow  # nnU-Net plans, preprocesses, trains 1 batch and predicts: about a minute on a busy 2-core CPU
def test_a_tiny_run_returns_one_probability_map_per_test_image_at_its_size(tmp_path):
    train_images, train_masks = _disk_cases(8, (64, 64), seed=0)
    test_images, _ = _disk_cases(2, (64, 64), seed=1)
    test_images[1] = test_images[1][:48, :56]  # another size: the order and the size come back
    probabilities, seconds = nnunet_probabilities(
        train_images, train_masks, test_images, tmp_path, num_epochs=1, images_per_epoch=2, threads=1
    )
    assert list(probabilities) == ["mirrored", "single view"]
    for maps in probabilities.values():
        assert [p.shape for p in maps] == [(64, 64), (48, 56)]
        for probability in maps:
            assert probability.dtype == np.float32
            assert np.isfinite(probability).all() and probability.min() >= 0 and probability.max() <= 1
    assert not np.array_equal(probabilities["mirrored"][0], probabilities["single view"][0])  # two predictions
    assert seconds > 0
    raw = tmp_path / "nnUNet_raw" / DATASET
    assert json.loads((raw / "dataset.json").read_text()) == {
        "channel_names": {"0": "grayscale"},
        "labels": {"background": 0, "nerve": 1},
        "numTraining": 8,
        "file_ending": ".png",
    }
    assert sorted(p.name for p in (raw / "imagesTr").iterdir())[0] == "case_0000_0000.png"
    assert len(list((raw / "labelsTr").glob("case_*.png"))) == 8
    assert len(list((raw / "imagesTs").glob("test_*_0000.png"))) == 2
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["batch_size"] == 2 and result["patch_size"] == [64, 64]  # nnU-Net's plan: 5% of 8 images, min 2
    assert result["iterations_per_epoch"] == 1  # 2 images per epoch in batches of 2
