"""``nerveseg bench training``: what train.json's trainer costs per step over a bare PyTorch loop of the same step.

The trainer runs as shipped (``SupervisedTrainer`` with its batch preparation, post-processing, training metric
and per-iteration handlers); after each of its steps, the same batch goes through bare loops of copies of the same
network and optimizer, so the timings are interleaved and share the machine's state. The trainer's step is timed
from the batch in hand to the iteration's end (the data wait is the throughput part's figure, not this one).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigWorkflow
from monai.data import MetaTensor
from torch import nn

from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.bundle.runs import config_files, read_config, run_workflow
from nerveseg.scripts.bench.league_peers import plain_step
from nerveseg.scripts.bench.timing import StepTimer

__all__ = ["measure_trainer_overhead", "trainer_overhead_markdown"]


def _bare_copy(
    network: nn.Module, optimizer: torch.optim.Optimizer, loss: nn.Module, channels_last: bool
) -> Callable[..., None]:
    own = copy.deepcopy(network).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    accepted = inspect.signature(type(optimizer)).parameters
    own_optimizer = type(optimizer)(own.parameters(), **{k: v for k, v in optimizer.defaults.items() if k in accepted})
    return plain_step(own, loss, own_optimizer)


class _InterleavedSteps:
    """Times the trainer's steps and, after each, one bare step per loop on the same batch."""

    def __init__(self, warmup: int, measured: int) -> None:
        self.warmup, self.measured = warmup, measured
        self.loops: dict[str, tuple[Callable[..., None], bool]] = {}
        self.seconds: dict[str, list[float]] = {"trainer": []}
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._fetched = 0.0

    def attach(self, trainer: Engine, loops: dict[str, tuple[Callable[..., None], bool]]) -> None:
        """Time ``trainer``'s steps and, after each, every loop (its step and whether it takes channels-last)."""
        self.loops = loops
        self.seconds.update({name: [] for name in loops})
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_in_hand)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._step_completed)

    def _batch_in_hand(self, engine: Engine) -> None:
        batch = engine.state.batch
        self._batch = tuple(
            (x.as_tensor() if isinstance(x, MetaTensor) else x).clone() for x in (batch["image"], batch["label"])
        )
        self._fetched = time.perf_counter()

    def _step_completed(self, engine: Engine) -> None:
        trainer_s = time.perf_counter() - self._fetched
        measuring = engine.state.iteration > self.warmup
        if measuring:
            self.seconds["trainer"].append(trainer_s)
        images, labels = self._batch
        for name, (loop, channels_last) in self.loops.items():
            x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
            start = time.perf_counter()
            loop(x, labels)
            if measuring:
                self.seconds[name].append(time.perf_counter() - start)
        if engine.state.iteration >= self.warmup + self.measured:
            engine.terminate()


def measure_trainer_overhead(bundle_root: str | os.PathLike, folder: Path, quick: bool) -> dict[str, Any]:
    """The trainer's step against bare loops at the Quick start's size (configs/quickstart.json's ``image_size``: the
    smaller the step, the larger a fixed per-step overhead's share), batch 8, on synthetic data.

    ``trainer_overhead_ratio`` is the trainer's median step over the bare loop's in the trainer's own memory order
    (the cost of the workflow); ``vs_bare_contiguous`` compares with the bare loop a user writes (default order).
    """
    data = folder / "data"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, num_subjects=4, frames_per_subject=6 if quick else 30, num_test_images=0)
    warmup, measured = (1, 2) if quick else (2, 10)
    image_size = read_config(config_files(bundle_root, "configs/quickstart.json"))["image_size"]
    overrides = {
        "bundle_root": str(Path(bundle_root).resolve()),
        "dataset_dir": str(data),
        "val_fraction": 0.25,
        "image_size": image_size,
        "batch_size": 8,
        "num_workers": 0,
        "ckpt_dir": str(folder / "models"),
        "output_dir": str(folder / "outputs"),
    }
    timer = StepTimer(warmup, measured)
    settings: dict[str, Any] = {}

    def attach(workflow: ConfigWorkflow) -> None:
        parsed = workflow.parser.get_parsed_content
        network, optimizer, loss = parsed("network"), parsed("optimizer"), parsed("loss")
        channels_last = bool(parsed("channels_last"))
        settings.update(channels_last=channels_last, network=type(network).__name__)
        order = "channels-last" if channels_last else "contiguous"
        loops = {f"bare {order}": (_bare_copy(network, optimizer, loss, channels_last), channels_last)}
        if channels_last:
            loops["bare contiguous"] = (_bare_copy(network, optimizer, loss, False), False)
        timer.attach(parsed("train#trainer"), loops)

    run_workflow(config_files(bundle_root, "configs/train.json"), "training", overrides, before_run=attach)
    medians = {name: statistics.median(timer.seconds[name]) for name in ("trainer", *timer.loops)}
    own_order = "bare channels-last" if settings["channels_last"] else "bare contiguous"
    result = {
        "image_size": image_size,
        "batch_size": 8,
        "steps": len(timer.seconds["trainer"]),
        "network": settings["network"],
        "channels_last": settings["channels_last"],
        "step_s": medians,
        "trainer_overhead_ratio": medians["trainer"] / medians[own_order],
        "vs_bare_contiguous": medians["trainer"] / medians["bare contiguous"],
    }
    print(json.dumps(result), flush=True)
    return result


def trainer_overhead_markdown(result: dict[str, Any]) -> list[str]:
    """The step times and the two ratios."""
    t = result
    lines = [
        f"Training step at {t['image_size'][0]}x{t['image_size'][1]}, batch {t['batch_size']}, {t['network']} "
        f"(median of {t['steps']} interleaved steps; the trainer as train.json ships it, bare loops of copies):",
        "",
        "| step | s | x bare, same order |",
        "|---|---:|---:|",
    ]
    own = "bare channels-last" if t["channels_last"] else "bare contiguous"
    for name, seconds in t["step_s"].items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / t['step_s'][own]:.2f} |")
    lines += ["", f"The trainer's step costs {t['vs_bare_contiguous']:.2f}x a bare loop in default memory order."]
    return lines
