from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = BUNDLE_ROOT / "configs"
SHARED_DATA = BUNDLE_ROOT.parent / "shared" / "data"

# Unit tests must not depend on (or fill) the user's cache of the default synthetic dataset.
os.environ.setdefault("NERVESEG_CACHE", str(BUNDLE_ROOT / ".pytest_cache" / "nerveseg"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A synthetic dataset in the challenge layout, small enough for CPU tests (64x96 frames)."""
    from nerveseg.bundle.data.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("data") / "tiny",
        num_subjects=4,
        frames_per_subject=6,
        num_test_images=3,
        seed=0,
        image_shape=(64, 96),
    )


def tiny_run_overrides(work: Path, num_epochs: int = 1, batch_size: int = 4, image_size: str = "[64, 96]") -> list[str]:
    """``monai.bundle`` overrides for a CPU-sized run that keeps models and outputs under ``work``."""
    return [
        "--bundle_root", str(BUNDLE_ROOT),
        "--ckpt_dir", str(work / "models"),
        "--output_dir", str(work / "outputs"),
        "--image_size", image_size,
        "--num_epochs", str(num_epochs),
        "--batch_size", str(batch_size),
        "--num_workers", "0",
    ]  # fmt: skip


def run_bundle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle ARGS`` in ``cwd`` and fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"monai.bundle {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result
