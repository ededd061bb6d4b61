"""The benchmarks' timer of a trainer's steps, attached to the trainer a bundle run builds.

Forward passes are timed by :func:`nerveseg.networks.profile.time_side_by_side`; training steps here, by the
trainer's own events, so the step timed is the one train.json runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from ignite.engine import Engine, Events
from monai.utils import convert_to_tensor

__all__ = ["StepTimer"]

BareLoop = tuple[Callable[[torch.Tensor, torch.Tensor], None], bool]
"""A training step outside the trainer, and whether it takes its images in channels-last order."""


class StepTimer:
    """Times each training step after ``warmup`` and stops the trainer after ``measured`` timed steps.

    Per step, in ``seconds``: ``"data"``, waiting for the batch (``GET_BATCH_STARTED`` to ``GET_BATCH_COMPLETED``);
    ``"trainer"``, the trainer's step from the batch in hand to ``ITERATION_COMPLETED``; ``"step"``, both; and, for
    each bare loop given, that loop's step on a copy of the same batch, run after the trainer's. ``images`` counts
    the images of each timed step.

    Args:
        warmup: steps not timed (loader start-up, first allocations).
        measured: steps timed.
    """

    def __init__(self, warmup: int, measured: int) -> None:
        self.warmup, self.measured = warmup, measured
        self.loops: dict[str, BareLoop] = {}
        self.seconds: dict[str, list[float]] = {"data": [], "trainer": [], "step": []}
        self.images: list[int] = []
        self._fetch_started = self._fetched = 0.0
        self._images = 0
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def attach(self, trainer: Engine, loops: dict[str, BareLoop] | None = None) -> None:
        """Time ``trainer``'s steps and, after each, one step of every bare loop of ``loops`` (by name)."""
        self.loops = dict(loops or {})
        self.seconds.update({name: [] for name in self.loops})
        trainer.add_event_handler(Events.GET_BATCH_STARTED, self._batch_requested)
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_in_hand)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._step_completed)

    def _batch_requested(self, engine: Engine) -> None:
        self._fetch_started = time.perf_counter()

    def _batch_in_hand(self, engine: Engine) -> None:
        batch = engine.state.batch  # collated here; decollated by the step's end
        self._images = len(batch["image"])
        if self.loops:
            self._batch = tuple(convert_to_tensor(batch[key], track_meta=False).clone() for key in ("image", "label"))
        self._fetched = time.perf_counter()

    def _step_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        measuring = engine.state.iteration > self.warmup
        if measuring:
            self.seconds["data"].append(self._fetched - self._fetch_started)
            self.seconds["trainer"].append(now - self._fetched)
            self.seconds["step"].append(now - self._fetch_started)
            self.images.append(self._images)
        for name, (loop, channels_last) in self.loops.items():
            images, labels = self._batch
            start = time.perf_counter()
            loop(images.contiguous(memory_format=torch.channels_last) if channels_last else images, labels)
            if measuring:
                self.seconds[name].append(time.perf_counter() - start)
        if engine.state.iteration >= self.warmup + self.measured:
            engine.terminate()
