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


def assert_export_reloads(config_files: list[str], tmp_path: Path, **export_options) -> None:
    """``ckpt_export`` a random-weight ``network_def`` from ``config_files``; the reloaded module matches eager."""
    import torch
    from monai.bundle import ConfigParser, ckpt_export

    torch.manual_seed(0)
    parser = ConfigParser()
    parser.read_config(config_files)
    network = parser.get_parsed_content("network_def").eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(tmp_path / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=config_files,
        **export_options,
    )
    reloaded = torch.jit.load(str(tmp_path / "model.ts"))
    image = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(image), network(image), rtol=1e-4, atol=1e-4)


def run_bundle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle ARGS`` in ``cwd`` and fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"monai.bundle {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result
