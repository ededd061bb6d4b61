"""``nerveseg bench training``: training images per second with train.json's transforms, loader and trainer, and
the share of each step spent waiting for data."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.bundle import ConfigWorkflow

from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.bundle.runs import config_files, run_workflow

__all__ = ["measure_training", "training_markdown"]


class _StepTimer:
    """Per step after ``warmup``: the seconds spent fetching the batch, the whole step, and the images in it;
    stops the trainer after ``measured`` steps."""

    def __init__(self, warmup: int, measured: int) -> None:
        self.warmup, self.measured = warmup, measured
        self.data_s: list[float] = []
        self.step_s: list[float] = []
        self.images: list[int] = []
        self._stamps: dict[str, float | int] = {}

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.GET_BATCH_STARTED, self._fetch_started)
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._fetch_completed)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._step_completed)

    def _fetch_started(self, engine: Engine) -> None:
        self._stamps["fetch"] = time.perf_counter()

    def _fetch_completed(self, engine: Engine) -> None:
        self._stamps["fetched"] = time.perf_counter()
        self._stamps["images"] = len(engine.state.batch["image"])  # collated here; decollated by the step's end

    def _step_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        if engine.state.iteration > self.warmup:
            self.data_s.append(self._stamps["fetched"] - self._stamps["fetch"])
            self.step_s.append(now - self._stamps["fetch"])
            self.images.append(int(self._stamps["images"]))
        if engine.state.iteration >= self.warmup + self.measured:
            engine.terminate()


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
    timer = _StepTimer(*((1, 2) if quick else (3, 12)))
    settings: dict[str, Any] = {}

    def attach(workflow: ConfigWorkflow) -> None:
        timer.attach(workflow.parser.get_parsed_content("train#trainer"))
        settings.update({k: workflow.parser.get_parsed_content(k) for k in ("image_size", "batch_size", "num_workers")})

    run_workflow(config_files(bundle_root, "configs/train.json"), "training", overrides, before_run=attach)
    result = {
        "image_size": list(settings["image_size"]),
        "batch_size": int(settings["batch_size"]),
        "num_workers": int(settings["num_workers"]),
        "steps": len(timer.step_s),
        "step_s": statistics.median(timer.step_s),
        "images_per_s": sum(timer.images) / sum(timer.step_s),
        "data_wait_fraction": sum(timer.data_s) / sum(timer.step_s),
        "data_wait_max_s": max(timer.data_s),
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
