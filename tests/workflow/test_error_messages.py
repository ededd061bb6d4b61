"""A run stopped by the user's input ends with the bundle's own message, not MONAI's wrapper, as its last line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import BUNDLE_ROOT, CONFIGS

pytestmark = pytest.mark.slow


def _last_line(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" in result.stderr  # the full traceback is still there, above the message
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


def _train(tmp_path: Path, *overrides: str) -> str:
    return _last_line(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(CONFIGS / "train.json"),
         "--bundle_root", str(BUNDLE_ROOT), "--output_dir", str(tmp_path / "outputs"),
         "--ckpt_dir", str(tmp_path / "models"), *overrides],
        cwd=tmp_path,
    )  # fmt: skip


def _class_map_folder(root: Path) -> Path:
    """Two subjects in the challenge layout; ``2_1_mask.tif`` holds classes 0, 1 and 2."""
    (root / "train").mkdir(parents=True)
    for subject in (1, 2):
        for frame in (1, 2):
            Image.fromarray(np.full((16, 24), 100, np.uint8)).save(root / "train" / f"{subject}_{frame}.tif")
            Image.fromarray(np.zeros((16, 24), np.uint8)).save(root / "train" / f"{subject}_{frame}_mask.tif")
    Image.fromarray(np.arange(16 * 24, dtype=np.uint8).reshape(16, 24) % 3).save(root / "train" / "2_1_mask.tif")
    return root


def test_training_without_data_says_what_to_pass(tmp_path):
    last = _train(tmp_path)
    assert last.startswith("DatasetError: no data set")
    assert "dataset_dir" in last and "datalist_file" in last
    assert "--config_file \"['configs/train.json','configs/quickstart.json']\"" in last
    assert "DatasetError: no data set" in (tmp_path / "outputs" / "train.log").read_text()


def test_training_on_a_bad_mask_names_the_file(tmp_path):
    root = _class_map_folder(tmp_path / "data")
    last = _train(tmp_path, "--dataset_dir", str(root))
    assert last.startswith(f"DatasetError: {root / 'train' / '2_1_mask.tif'}: has values [0, 1, 2]")


def test_command_line_ends_with_the_same_message(tmp_path):
    root = _class_map_folder(tmp_path / "data")
    nerveseg = Path(sys.executable).with_name("nerveseg")
    last = _last_line(
        [str(nerveseg), "prepare", "nerve", "--src", str(root), "--out", str(tmp_path / "out" / "d.json")], tmp_path
    )
    # not wrapped by MONAI, so Python's own last line is the message (with the class's full name), said once
    assert last.startswith(f"nerveseg.bundle.data.io.DatasetError: {root / 'train' / '2_1_mask.tif'}: has values")
