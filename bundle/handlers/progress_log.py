"""Plain progress lines for a long run: where it is, how long it took, and when it will end."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ignite.engine import Engine, Events

from nerveseg.utils.progress import format_duration

__all__ = ["ProgressLog"]


class ProgressLog:
    """Log a few lines per epoch (with the loss), and after each epoch the time it took and the run's end.

    MONAI's ``StatsHandler`` logs every iteration and says nothing of time; ignite's ``ProgressBar`` redraws a bar
    that a log file keeps as carriage-return noise. This handler writes whole lines, the same on a terminal and
    in ``train.log``::

        Epoch 3/12: 15/60 iterations, loss 0.4123; 0:20 into the epoch, about 1:00 left in it
        Epoch 3/12 done in 1:21 (validation included); run 4:05 so far, about 12:10 left, ends about 19:42

    The estimates are the mean time per iteration of the epoch so far, and of the run so far with validation
    included (a resumed run counts from where it resumed, inside an epoch too). Attach it after the validation
    handler, so that the epoch's time includes validation.

    Args:
        lines_per_epoch: lines per epoch, evenly spaced, the end-of-epoch line included (1: that line only).
        output_transform: the engine's output -> a loss to show, or ``None`` (e.g.
            ``monai.handlers.from_engine(["loss"], first=True)``).
        desc: the start of each line: ``"Epoch"`` for a trainer, ``"Inference"`` for a one-epoch evaluator.
        name: the logger's name; ``None`` is the root logger, as MONAI's ``StatsHandler(name=None)``.
    """

    def __init__(
        self,
        lines_per_epoch: int = 4,
        output_transform: Callable[[object], object] = lambda output: None,
        desc: str = "Epoch",
        name: str | None = None,
    ) -> None:
        self.lines_per_epoch = max(0, int(lines_per_epoch))
        self.output_transform = output_transform
        self.desc = desc
        self.logger = logging.getLogger(name)
        self._run_start = self._epoch_start = 0.0
        self._first_iteration = self._epoch_first_iteration = 0
        self._marks: set[int] = set()  # the epoch's batches after which a line is logged

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _started(self, engine: Engine) -> None:
        self._run_start = time.monotonic()
        self._first_iteration = engine.state.iteration  # what a resumed run did before is not timed here

    def _epoch_started(self, engine: Engine) -> None:
        self._epoch_start = time.monotonic()
        self._epoch_first_iteration = engine.state.iteration  # not a multiple of the epoch's length after a resume
        length = engine.state.epoch_length or 0
        self._marks = {math.ceil(length * k / self.lines_per_epoch) for k in range(1, self.lines_per_epoch)}

    def _where(self, engine: Engine) -> str:
        if (engine.state.max_epochs or 1) == 1:
            return self.desc
        return f"{self.desc} {engine.state.epoch}/{engine.state.max_epochs}"

    def _iteration_completed(self, engine: Engine) -> None:
        length = engine.state.epoch_length
        done = (engine.state.iteration - 1) % length + 1 if length else 0
        if done not in self._marks:
            return
        elapsed = time.monotonic() - self._epoch_start
        timed = max(engine.state.iteration - self._epoch_first_iteration, 1)
        left = elapsed / timed * (length - done)
        loss = self.output_transform(engine.state.output)
        shown = f", loss {float(loss):.4f}" if loss is not None else ""
        self.logger.info(
            f"{self._where(engine)}: {done}/{length} iterations{shown}; {format_duration(elapsed)} into the epoch, "
            f"about {format_duration(left)} left in it"
        )

    def _epoch_completed(self, engine: Engine) -> None:
        now = time.monotonic()
        took = f"{self._where(engine)} done in {format_duration(now - self._epoch_start)}"
        total = (engine.state.max_epochs or 1) * (engine.state.epoch_length or 0)
        timed = engine.state.iteration - self._first_iteration
        if engine.state.iteration >= total or timed <= 0:
            self.logger.info(f"{took}; run {format_duration(now - self._run_start)}")
            return
        left = (now - self._run_start) / timed * (total - engine.state.iteration)
        ends = (datetime.now() + timedelta(seconds=left)).strftime("%H:%M")
        self.logger.info(
            f"{took}; run {format_duration(now - self._run_start)} so far, about {format_duration(left)} left, "
            f"ends about {ends}"
        )
