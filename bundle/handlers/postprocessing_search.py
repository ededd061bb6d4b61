"""Post-processing tuned on the validation split, as an evaluator handler (``configs/tune.json`` attaches it)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine
from monai.utils import CommonKeys

from nerveseg.bundle.tuning import (
    GATE_THRESHOLDS,
    MIN_AREAS,
    THRESHOLDS,
    PostprocessingChoice,
    choice_table,
    choose_postprocessing,
)
from nerveseg.utils.class_logits import class_logits_of
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import write_json_atomically

__all__ = ["PostprocessingSearch"]

logger = logging.getLogger(__name__)


class PostprocessingSearch:
    """Keep every image's probability map, label and presence; when the run completes, choose the post-processing.

    Attach it to an evaluator whose post-processing stops at probabilities at the label's resolution: sigmoid,
    the presence gate open, the resize inverted, no thresholding (``configs/tune.json`` sets this up on
    ``configs/evaluate.json``). Per image it keeps the map as 8 bits (steps of 1/255, so that a whole validation
    split fits in memory), the binary label and, when the network gives one class logit (MUNet's head, the
    two-stage model; see :mod:`nerveseg.utils.class_logits`), the presence probability, read from the batch
    right after the forward pass because inverting the resize drops the prediction's metadata.

    When the evaluator completes, :func:`~nerveseg.bundle.tuning.choose_postprocessing` searches threshold,
    minimum mask area and, with presence for every image, the gate threshold for the best challenge mean Dice;
    ``{"threshold", "min_area", "gate_threshold"}`` is written to ``output_path`` (through a temporary name), an
    override to stack on the evaluation or inference configs; the default and tuned scores are logged. The
    result stays on the handler (``best``, ``default``, ``num_images``, ``presence_searched``) and the collected
    maps are dropped. The tuned score is measured on the images tuned on, so it flatters the setting.

    Args:
        output_path: the override file to write, e.g. ``outputs/eval/postprocessing.json``.
        thresholds: probability thresholds to try (0.5 is always added).
        min_areas: minimum total mask areas to try, in pixels at the label's resolution (0 is always added).
        gate_thresholds: presence thresholds to try when the network gives a presence probability.
        output_transform: maps ``engine.state.output`` (a list of per-sample dictionaries) to
            ``(preds, labels)``, each a list of ``[1, H, W]`` tensors; by default ``pred`` and ``label``.
    """

    def __init__(
        self,
        output_path: str | os.PathLike,
        thresholds: Sequence[float] = THRESHOLDS,
        min_areas: Sequence[int] = MIN_AREAS,
        gate_thresholds: Sequence[float] = GATE_THRESHOLDS,
        output_transform: Callable | None = None,
    ) -> None:
        for name, values, low, high in (
            ("thresholds", thresholds, 0.0, 1.0),
            ("gate_thresholds", gate_thresholds, 0.0, 1.0),
            ("min_areas", min_areas, 0, float("inf")),
        ):
            if not values or not all(low <= value < high for value in values):
                raise UserInputError(f"{name} must be a non-empty list of values in [{low}, {high}), got {values}.")
        self.output_path = Path(output_path)
        self.thresholds = tuple(thresholds)
        self.min_areas = tuple(int(area) for area in min_areas)
        self.gate_thresholds = tuple(gate_thresholds)
        self.output_transform = output_transform or from_engine([CommonKeys.PRED, CommonKeys.LABEL])
        self.best: PostprocessingChoice | None = None
        self.default: PostprocessingChoice | None = None
        self.num_images = 0
        self.presence_searched = False
        self._probabilities: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._presence: list[float] = []
        self._batch_presence: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._keep_batch_presence)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._search)

    def _reset(self, engine: Engine) -> None:
        self._probabilities, self._labels, self._presence = [], [], []

    def _keep_batch_presence(self, engine: Engine) -> None:
        logits = class_logits_of(engine.state.output[CommonKeys.PRED])
        one_logit = logits is not None and logits.shape[-1] == 1
        self._batch_presence = torch.sigmoid(logits.float()).flatten().tolist() if one_logit else []

    def _collect(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        for index, (pred, label) in enumerate(zip(preds, labels, strict=True)):
            probability = torch.as_tensor(pred).float().cpu().numpy()[0]
            self._probabilities.append(np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8))
            self._labels.append(torch.as_tensor(label).cpu().numpy()[0] > 0)
            if index < len(self._batch_presence):
                self._presence.append(self._batch_presence[index])

    def _search(self, engine: Engine) -> None:
        if not self._labels:
            raise UserInputError("The evaluator gave no images to tune on; check the datalist's 'validation' split.")
        self.num_images = len(self._labels)
        self.presence_searched = len(self._presence) == self.num_images
        self.best, self.default = choose_postprocessing(
            self._probabilities,
            self._labels,
            self._presence if self.presence_searched else None,
            thresholds=self.thresholds,
            min_areas=self.min_areas,
            gate_thresholds=self.gate_thresholds,
        )
        self._reset(engine)
        best = self.best
        override = {"threshold": best.threshold, "min_area": best.min_area, "gate_threshold": best.gate_threshold}
        write_json_atomically(self.output_path, override)
        logger.info(f"{self.summary()}\nOverride written to {self.output_path}.")

    def summary(self) -> str:
        """How many images were searched, whether the gate was, and the default and tuned scores."""
        if self.best is None or self.default is None:
            raise RuntimeError("No search has run yet; attach the handler to an evaluator and run it.")
        gate = "searched" if self.presence_searched else "not available (no presence probability)"
        heading = f"{self.num_images} validation images; presence gate {gate}; the tuned score is measured on them"
        return f"{heading}\n{choice_table(self.best, self.default)}"
