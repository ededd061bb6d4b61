"""``nerveseg bench training``: training images per second with train.json's transforms, loader and trainer, and
the share of each step spent waiting for data."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.bundle.runs import config_files, run_workflow
from nerveseg.scripts.bench.timing import StepTimer

__all__ = ["measure_training", "training_markdown"]


def measure_training(bundle_root: str | os.PathLike, folder: Path, quick: bool) -> dict[str, Any]:
    """Training images/s at 448x576 with train.json's transforms, loader and trainer, and the data-wait share.

    The data is the synthetic generator's (580x420 frames). The run's training handlers (validation, checkpoints,
    logging) are overridden away so only training steps are timed; the first steps (loader start-up) are not
    counted.
    """
    data = folder / "data"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, num_subjects=2 if quick else 4, frames_per_subject=4 if quick else 10, num_test_images=0)
    overrides = {
        "bundle_root": str(Path(bundle_root).resolve()),
        "dataset_dir": str(data),
        "val_fraction": 0.25,
        "ckpt_dir": str(folder / "models"),
        "output_dir": str(folder / "outputs"),
        "train#trainer#train_handlers": [],
        **({"batch_size": 2, "num_workers": 2} if quick else {}),
    }
    timer = StepTimer(*((1, 2) if quick else (3, 12)))
    settings: dict[str, Any] = {}

    def attach(workflow: ConfigWorkflow) -> None:
        timer.attach(workflow.parser.get_parsed_content("train#trainer"))
        settings.update({k: workflow.parser.get_parsed_content(k) for k in ("image_size", "batch_size", "num_workers")})

    run_workflow(config_files(bundle_root, "configs/train.json"), "training", overrides, before_run=attach)
    result = {
        "image_size": list(settings["image_size"]),
        "batch_size": int(settings["batch_size"]),
        "num_workers": int(settings["num_workers"]),
        "steps": len(timer.seconds["step"]),
        "step_s": statistics.median(timer.seconds["step"]),
        "images_per_s": sum(timer.images) / sum(timer.seconds["step"]),
        "data_wait_fraction": sum(timer.seconds["data"]) / sum(timer.seconds["step"]),
        "data_wait_max_s": max(timer.seconds["data"]),
    }
    print(json.dumps(result), flush=True)
    return result


def training_markdown(result: dict[str, Any]) -> list[str]:
    """One sentence: throughput, step time and the data-wait share."""
    t = result
    return [
        f"Training at {t['image_size'][0]}x{t['image_size'][1]}, batch {t['batch_size']}, {t['num_workers']} "
        f"loader workers: {t['images_per_s']:.2f} images/s, {t['step_s']:.2f} s per step (median of {t['steps']}); "
        f"waiting for data {100 * t['data_wait_fraction']:.1f}% of step time "
        f"(longest wait {t['data_wait_max_s']:.3f} s).",
    ]
