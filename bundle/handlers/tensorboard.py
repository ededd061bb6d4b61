"""TensorBoard panels MONAI's handlers do not draw: the learning rate, and overlays of fixed validation cases."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.handlers import TensorBoardHandler
from torch.optim import Optimizer

from nerveseg.utils.errors import UserInputError

__all__ = ["LearningRateLogger", "ValidationPanel"]


class LearningRateLogger(TensorBoardHandler):
    """Write the learning rate of the first parameter group as ``lr`` after every trainer epoch.

    Args:
        optimizer: the trainer's optimizer.
        summary_writer: a shared writer; by default one is created in ``log_dir``.
        log_dir: the TensorBoard folder when no writer is given.
    """

    def __init__(self, optimizer: Optimizer, summary_writer=None, log_dir: str = "./runs") -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.optimizer = optimizer

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _write(self, engine: Engine) -> None:
        self._writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], engine.state.epoch)
        self._writer.flush()


class ValidationPanel(TensorBoardHandler):
    """One image per validation: the same cases every epoch, image in gray, label in green, prediction in red.

    The cases are chosen at the first validation, in loader order: up to half of ``num_cases`` with a structure in
    the label, the rest without, so that the panel shows both misses and false positives. Attach to the evaluator;
    the step is the evaluator's epoch, which MONAI's ``ValidationHandler`` sets to the trainer's. Outputs that are
    not masks (a classifier's ``[K]`` logits) are not drawn.

    Args:
        num_cases: images in the panel, drawn in rows of ``per_row``.
        summary_writer: a shared writer; by default one is created in ``log_dir``.
        log_dir: the TensorBoard folder when no writer is given.
        tag: the image's name in TensorBoard.
        per_row: images per row.
    """

    def __init__(
        self,
        num_cases: int = 8,
        summary_writer=None,
        log_dir: str = "./runs",
        tag: str = "validation_cases",
        per_row: int = 4,
    ) -> None:
        if num_cases < 1 or per_row < 1:
            raise UserInputError(f"num_cases and per_row must be at least 1, got {num_cases} and {per_row}.")
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.num_cases = num_cases
        self.per_row = per_row
        self.tag = tag
        self.case_ids: list[str] | None = None
        self._tiles: dict[str, torch.Tensor] = {}
        self._candidates: list[tuple[str, bool, torch.Tensor]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._tiles, self._candidates = {}, []

    def _collect(self, engine: Engine) -> None:
        for sample in engine.state.output:
            if sample["pred"].ndim < 3:
                continue
            case = Path(str(sample["image"].meta.get("filename_or_obj", len(self._candidates)))).stem
            if self.case_ids is not None and case not in self.case_ids:
                continue
            if self.case_ids is None:  # first validation: keep only as many candidates as could be chosen
                positive = bool(sample["label"].any())
                kept = sum(1 for c in self._candidates if c[1] == positive)
                if kept < (self.num_cases // 2 if positive else self.num_cases):
                    self._candidates.append((case, positive, overlay(sample["image"], sample["label"], sample["pred"])))
            else:
                self._tiles[case] = overlay(sample["image"], sample["label"], sample["pred"])

    def _write(self, engine: Engine) -> None:
        if self.case_ids is None:
            positives = [c for c in self._candidates if c[1]][: self.num_cases // 2]
            negatives = [c for c in self._candidates if not c[1]][: self.num_cases - len(positives)]
            chosen = {c[0] for c in positives + negatives}
            self.case_ids = [c[0] for c in self._candidates if c[0] in chosen]
            self._tiles = {c[0]: c[2] for c in self._candidates if c[0] in chosen}
        tiles = [self._tiles[case] for case in self.case_ids if case in self._tiles]
        if tiles:
            self._writer.add_image(self.tag, tile_grid(tiles, self.per_row), engine.state.epoch, dataformats="CHW")
            self._writer.flush()


def overlay(image: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """An RGB ``[3, H, W]`` picture in [0, 1]: the first image channel in gray, the label green, the prediction red."""
    gray = torch.as_tensor(image, dtype=torch.float32)[0].detach().cpu()
    gray = (gray - gray.min()) / (gray.max() - gray.min()).clamp_min(1e-8)
    label = (torch.as_tensor(label)[0].detach().cpu() > 0.5).float()
    pred = (torch.as_tensor(pred)[0].detach().cpu() > 0.5).float()
    tint = torch.stack([pred, label, torch.zeros_like(gray)])
    return (0.6 * gray + 0.4 * tint).clamp(0, 1)


def tile_grid(tiles: Sequence[torch.Tensor], per_row: int) -> torch.Tensor:
    """Lay ``[3, H, W]`` tiles of one size out in rows of ``per_row``, padding the last row with black."""
    blank = torch.zeros_like(tiles[0])
    rows = []
    for start in range(0, len(tiles), per_row):
        row = list(tiles[start : start + per_row])
        row += [blank] * (per_row - len(row)) if len(tiles) > per_row else []
        rows.append(torch.cat(row, dim=2))
    return torch.cat(rows, dim=1)
