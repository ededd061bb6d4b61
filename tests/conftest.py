from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = BUNDLE_ROOT / "configs"
SHARED_DATA = BUNDLE_ROOT.parent / "shared" / "data"
TINY_NETWORK = {
    "_target_": "BasicUNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 1,
    "features": [4, 4, 8, 8, 16, 4],
}
"""MONAI's BasicUNet at its smallest, as a ``network_def`` override: the tests' network where any one will do."""

# Unit tests must not depend on (or fill) the user's cache of the default synthetic dataset.
os.environ.setdefault("NERVESEG_CACHE", str(BUNDLE_ROOT / ".pytest_cache" / "nerveseg"))


@pytest.fixture(autouse=True)
def restore_logging():
    """Every test leaves the root logger as it found it: a ``ConfigWorkflow`` applies configs/logging.conf (whose
    console handler would outlive pytest's captured streams) and a run's ``initialize`` adds its log file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True, scope="session")
def absl_handler_on_the_real_stderr():
    """absl.logging, which OpenVINO's model converter imports, creates a handler on the stderr of that moment and
    closes that stream when a later ``logging.config.fileConfig`` (every bundle run applying configs/logging.conf)
    shuts old handlers down, unless it is the current ``sys.stderr``. In a process that keeps one stderr this never
    happens; under pytest, whose captures swap it, it closed the session's capture. Its stream is set to the
    process's own stderr, which absl never closes."""
    try:
        from absl import logging as absl_logging
    except ImportError:
        yield
        return
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    yield


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


def tiny_overrides(work: Path, num_epochs: int = 1, batch_size: int = 4, image_size=(64, 96)) -> dict[str, Any]:
    """Config overrides for a CPU-sized run that keeps models and outputs under ``work``."""
    return {
        "bundle_root": str(BUNDLE_ROOT),
        "ckpt_dir": str(work / "models"),
        "output_dir": str(work / "outputs"),
        "image_size": list(image_size),
        "num_epochs": num_epochs,
        "batch_size": batch_size,
        "num_workers": 0,
    }


def tiny_run_overrides(work: Path, num_epochs: int = 1, batch_size: int = 4, image_size: str = "[64, 96]") -> list[str]:
    """:func:`tiny_overrides` as ``monai.bundle`` command-line arguments."""
    size = json.loads(image_size)
    return as_arguments(tiny_overrides(work, num_epochs, batch_size, size))


def as_arguments(overrides: dict[str, Any]) -> list[str]:
    """``{"num_epochs": 2}`` as ``["--num_epochs", "2"]``, lists as JSON, for a ``monai.bundle`` command line."""
    arguments = []
    for key, value in overrides.items():
        arguments += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return arguments


def tiny_checkpoint(folder: Path, image_size: Sequence[int]) -> Path:
    """``folder/model.pt`` of :data:`TINY_NETWORK` with seeded weights, its logits spread wide (masks of every size,
    few pixels on a threshold), and ``training_settings.json`` saying it was trained at ``image_size``."""
    import torch
    from monai.networks.nets import BasicUNet

    from nerveseg.bundle.trained_settings import write_trained_settings

    torch.manual_seed(0)
    network = BasicUNet(**{k: v for k, v in TINY_NETWORK.items() if k != "_target_"})
    with torch.no_grad():
        network.final_conv.weight.mul_(20)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    write_trained_settings(folder, network, image_size)
    return folder / "model.pt"


def run_workflow(run_id: str, config_files: Sequence[str | Path], **overrides: Any) -> Any:
    """Run a bundle workflow in this process, as ``python -m monai.bundle run RUN_ID`` would, through
    ``nerveseg.bundle.runs`` (which keeps each run's log file to that run); returns the finished ``ConfigWorkflow``."""
    from nerveseg.bundle.runs import run_workflow as run

    return run(config_files, run_id, overrides)


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


def nerve_folders(root: Path, count: int = 12) -> Path:
    """``images/`` and ``masks/`` PNGs (class 1 = a bright disc, as USGRA-seg's nerve label), 64x64."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for i in range(count):
        cy, cx = rng.integers(20, 44, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 100
        image = rng.normal(60, 15, (64, 64)) + 120 * disc
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"case{i}.png")
        Image.fromarray(disc.astype(np.uint8)).save(root / "masks" / f"case{i}.png")
    return root


# ---- checks of a prepared dataset (nerveseg prepare), shared by its unit and real-data tests ----


def image_mask_folders(root: Path, count: int = 6) -> Path:
    """``count`` random 24x32 PNGs in ``root/images`` with masks in ``root/masks``, every second one empty."""
    rng = np.random.default_rng(0)
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 32), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((24, 32), dtype=np.uint8)
        mask[4:12, 4 + i : 12 + i] = 255 * (i % 2)
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def all_items(datalist: dict) -> list[dict]:
    return datalist["training"] + datalist["validation"] + datalist["test"]


def check_prepared_pairs(root: Path, datalist: dict) -> None:
    for item in all_items(datalist):
        image = Image.open(root / item["image"])
        assert image.mode == "L"
        if "label" in item:
            mask = np.asarray(Image.open(root / item["label"]))
            assert mask.shape == (image.height, image.width)
            assert set(np.unique(mask)) <= {0, 255}
            assert int(np.count_nonzero(mask)) == item["area"]


def check_subject_grouping(datalist: dict) -> None:
    folds_of: dict[str, set] = {}
    for item in datalist["training"] + datalist["validation"]:
        folds_of.setdefault(item["subject"], set()).add(item["fold"])
    assert all(len(folds) == 1 for folds in folds_of.values()), "a subject sits in two folds"
    test_subjects = {item["subject"] for item in datalist["test"]}
    assert not test_subjects & set(folds_of), "a test subject also sits in a fold"
    images = [item["image"] for item in all_items(datalist)]
    assert len(images) == len(set(images)), "an image appears twice"
