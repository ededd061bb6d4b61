"""Checkpoints a training run can be killed between: the best model, and the whole state to resume from, after each
epoch and, for long epochs, every few iterations."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, Randomizable
from torch import nn

from nerveseg.bundle.trained_settings import write_trained_settings
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import save_state_dict

logger = logging.getLogger(__name__)

__all__ = ["TrainingCheckpoints"]


class TrainingCheckpoints:
    """Save ``model.pt`` when the validation key metric improves and ``last.pt`` after every epoch (and, with
    ``interval``, every ``interval`` iterations); resume from ``last.pt``.

    Both files are written to a temporary name and renamed, so a run killed at any moment (``kill -9`` included)
    leaves the previous complete checkpoint. ``last.pt`` holds the network, every object in ``state_objects``
    (optimizer, learning-rate scheduler, trainer, SWA handler: anything with ``state_dict``/``load_state_dict``),
    the validator's best metric and its epoch, and the random states: Python's, NumPy's, torch's and those of the
    random transforms in ``random_transforms``. With ``resume=True`` they are all restored when the trainer starts,
    and training continues at the next epoch up to the same ``num_epochs``.

    A checkpoint inside an epoch also holds the random states of the epoch's start. Resuming from it restores
    those, draws (and drops) the epoch's batches that were already trained on, so that the data loader's shuffle
    and the augmentations are where they were, then restores the states of the checkpoint and goes on with the
    next batch. The epoch's training metric then covers only the batches after the resume.

    A resumed run repeats the uninterrupted one exactly when data loading happens in the main process
    (``num_workers=0``); with worker processes, augmentations continue from fresh worker seeds, so the result
    matches in distribution, not bit for bit.

    Attach it to the trainer after the ``ValidationHandler``, so that each epoch's checkpoint holds its validation.

    Args:
        ckpt_dir: folder of ``model.pt`` and ``last.pt``.
        network: the network; saved without a ``DistributedDataParallel`` wrapper.
        validator: the evaluator whose ``best_metric_epoch`` marks an improvement; ``None`` saves every epoch.
        state_objects: named objects restored on resume, such as ``{"optimizer": ..., "lr_scheduler": ...}``; the
            engine the handler is attached to is saved and restored itself.
        random_transforms: the training transforms (a ``Compose``), whose random generators are saved.
        resume: restore ``last.pt`` when the trainer starts; it must exist.
        image_size: the training image size, recorded with the network's class in ``training_settings.json``
            beside ``model.pt`` whenever it is saved, so that evaluation and inference can check theirs
            (:func:`nerveseg.bundle.trained_settings.check_checkpoint`); ``None`` records nothing.
        interval: also save ``last.pt`` after every ``interval`` batches of an epoch (0: after each epoch only), for
            epochs long enough that losing one hurts (an hour on a slow CPU). Counted from each epoch's start, so a
            multiple of the trainer's ``accumulation_steps`` never falls inside an optimizer step.
        best_filename: the best model's file name (a plain state dict of the network).
        last_filename: the resume file's name.
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        network: nn.Module,
        validator: Engine | None = None,
        state_objects: Mapping[str, Any] | None = None,
        random_transforms: Compose | None = None,
        resume: bool = False,
        image_size: Sequence[int] | None = None,
        interval: int = 0,
        best_filename: str = "model.pt",
        last_filename: str = "last.pt",
    ) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.network = network
        self.validator = validator
        self.state_objects = dict(state_objects or {})
        self.random_transforms = random_transforms
        self.resume = bool(resume)
        self.image_size = image_size
        self.interval = int(interval)
        if self.interval < 0:
            raise UserInputError(f"interval must be >= 0 iterations (0: every epoch only), got {interval}.")
        self._epoch_states: dict[str, Any] | None = None  # random states at the start of the running epoch
        self._resumed_epoch_states: dict[str, Any] | None = None  # the epoch start of a checkpoint inside an epoch
        self.best_path = self.ckpt_dir / best_filename
        self.last_path = self.ckpt_dir / last_filename
        for name, obj in self.state_objects.items():
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise ValueError(f"state_objects[{name!r}] ({type(obj).__name__}) has no state_dict/load_state_dict.")

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._restore)
        if self.interval or self.resume:
            engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        if self.interval:
            engine.add_event_handler(Events.ITERATION_COMPLETED(event_filter=self._inside_epoch), self._save)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._save)

    def _epoch_started(self, engine: Engine) -> None:
        if self._resumed_epoch_states is not None:
            self._set_random_states(self._resumed_epoch_states)
            self._resumed_epoch_states = None
        self._epoch_states = self._random_states()

    def _inside_epoch(self, engine: Engine, iteration: int) -> bool:
        """Every ``interval`` batches counted from the epoch's start, as MONAI's trainer counts accumulation steps;
        not at the epoch's end, which is saved after validation."""
        done = iteration % engine.state.epoch_length
        return done > 0 and done % self.interval == 0

    def _unwrapped(self) -> nn.Module:
        return getattr(self.network, "module", self.network)

    def _save(self, engine: Engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return
        state = self.validator.state if self.validator is not None else None
        inside_epoch = engine.state.iteration % engine.state.epoch_length != 0
        improved = state is None or getattr(state, "best_metric_epoch", -1) == engine.state.epoch
        if improved and not inside_epoch:
            if self.image_size is not None:
                write_trained_settings(self.ckpt_dir, self._unwrapped(), self.image_size)
            save_state_dict(self._unwrapped().state_dict(), self.best_path)
        checkpoint = {
            "trainer": engine.state_dict(),
            "network": self._unwrapped().state_dict(),
            **{name: obj.state_dict() for name, obj in self.state_objects.items()},
            "random_states": self._random_states(),
        }
        if inside_epoch:
            checkpoint["epoch_random_states"] = self._epoch_states
        if state is not None:
            checkpoint["best_metric"] = {"value": state.best_metric, "epoch": state.best_metric_epoch}
        save_state_dict(checkpoint, self.last_path)

    def _restore(self, engine: Engine) -> None:
        if not self.last_path.is_file():
            raise UserInputError(
                f"resume is true but {self.last_path} does not exist; start without --resume, or set ckpt_dir to the "
                "run to continue."
            )
        # Our own file; it holds NumPy and Python random states, which weights_only loading refuses.
        checkpoint = torch.load(self.last_path, map_location="cpu", weights_only=False)
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        if epoch_length is not None and checkpoint["trainer"]["epoch_length"] != epoch_length:
            raise UserInputError(
                f"{self.last_path} was saved with {checkpoint['trainer']['epoch_length']} iterations per epoch, this "
                f"run has {epoch_length}; resume with the data and batch_size of the interrupted run."
            )
        engine.load_state_dict(checkpoint["trainer"])
        if engine.state.epoch > max_epochs:
            raise UserInputError(
                f"{self.last_path} is at epoch {engine.state.epoch}, past num_epochs ({max_epochs}); "
                "raise num_epochs to train on."
            )
        engine.state.max_epochs = max_epochs
        self._unwrapped().load_state_dict(checkpoint["network"])
        for name, obj in self.state_objects.items():
            if name not in checkpoint:
                raise UserInputError(
                    f"{self.last_path} holds no {name!r} state to resume; it has {', '.join(checkpoint)}: resume with "
                    "the configuration of the interrupted run."
                )
            obj.load_state_dict(checkpoint[name])
        if self.validator is not None and "best_metric" in checkpoint:
            self.validator.state.best_metric = checkpoint["best_metric"]["value"]
            self.validator.state.best_metric_epoch = checkpoint["best_metric"]["epoch"]
        self._set_random_states(checkpoint["random_states"])
        done = engine.state.iteration % engine.state.epoch_length
        if not done:
            logger.info(f"Resumed from {self.last_path} after epoch {engine.state.epoch}.")
            return
        self._resumed_epoch_states = checkpoint["epoch_random_states"]
        if engine.state.dataloader is None:
            logger.warning("could not skip the trained batches: the trainer runs without data.")
        else:
            engine.state.dataloader = _SkipTrainedBatches(
                engine.state.dataloader, done, lambda: self._set_random_states(checkpoint["random_states"])
            )
        logger.info(
            f"Resumed from {self.last_path} at iteration {done}/{engine.state.epoch_length} of epoch "
            f"{engine.state.epoch + 1}."
        )

    def _random_states(self) -> dict[str, Any]:
        return {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "transforms": [t.R.get_state() for t in _randomizables(self.random_transforms)],
        }

    def _set_random_states(self, states: Mapping[str, Any]) -> None:
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])
        transforms = list(_randomizables(self.random_transforms))
        if len(transforms) != len(states["transforms"]):
            raise UserInputError(
                f"{self.last_path} was saved with {len(states['transforms'])} random transforms, the config now has "
                f"{len(transforms)}; resume with the configuration of the interrupted run."
            )
        for transform, state in zip(transforms, states["transforms"], strict=True):
            transform.R.set_state(state)


class _SkipTrainedBatches:
    """The trainer's data whose first pass starts after the ``done`` batches a checkpoint inside an epoch had
    trained on: they are drawn and dropped, so that the shuffle and the augmentations are where they were, and then
    ``resumed`` restores the checkpoint's random states. Later passes are the data's own.

    It takes the place of ``engine.state.dataloader`` (ignite's public state) when the run resumes, so the engine
    makes the epoch's iterator from it at the same moment as from the data, and no RNG is drawn twice.
    """

    def __init__(self, data: Iterable, done: int, resumed: Callable[[], None]) -> None:
        self.data, self.done, self.resumed = data, done, resumed

    def __iter__(self) -> Iterator:
        batches = iter(self.data)
        if self.done:
            for _ in range(self.done):
                next(batches)
            self.done = 0
            self.resumed()
        return batches

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]


def _randomizables(transforms: Compose | None) -> Iterator[Randomizable]:
    """Every random generator owner in ``transforms``, nested ``Compose`` and array transforms included, in a fixed
    order. Walked in place: ``Compose.flatten()`` builds a new ``Compose``, which re-seeds every transform in it."""
    if transforms is None:
        return
    seen: set[int] = set()
    stack: list[object] = [transforms]
    while stack:
        transform = stack.pop()
        if id(transform) in seen:
            continue
        seen.add(id(transform))
        if isinstance(transform, Randomizable) and type(transform) is not Compose:  # a plain Compose's R only seeds
            yield transform
        children = list(transform.transforms) if isinstance(transform, Compose) else []
        children += [v for v in vars(transform).values() if isinstance(v, Randomizable)]
        stack.extend(reversed(children))
