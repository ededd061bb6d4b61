"""The per-image evaluation report."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine
from monai.metrics import compute_dice
from monai.utils import CommonKeys

from nerveseg.networks.outputs import class_logits_of

logger = logging.getLogger(__name__)


def _image_id(sample: dict, key: str) -> str:
    meta = getattr(sample[key], "meta", {})
    name = meta.get("filename_or_obj")
    if not name:
        raise KeyError(f"sample['{key}'] carries no 'filename_or_obj' metadata to name its row.")
    return Path(name).stem


class PerImageReport:
    """Write one CSV row per image, ``id, dice, pred_area, label_area[, presence]``, and log the challenge mean Dice.

    Dice follows the nerve challenge: 1 when prediction and label are both empty, 0 when only one is. Areas
    are pixel counts at the resolution of ``pred`` and ``label`` (the original image size when the
    evaluation config inverts the resize). The CSV is written to a temporary name and renamed when the
    evaluation completes, so an interrupted run leaves the previous report intact. When the network attaches one
    presence logit per image (MUNet's class head, the two-stage model; see :mod:`nerveseg.networks.outputs`), a
    ``presence`` column holds its probability, from which ``nerveseg tune-gate`` chooses a gate threshold. The
    logits are read from the batch output right after the forward pass, because inverting the resize in
    post-processing replaces the prediction's metadata with the image's.

    Args:
        output_path: the CSV file to write.
        output_transform: maps ``engine.state.output`` (a list of per-sample dictionaries) to
            ``(preds, labels)``, each a list of binary ``[1, H, W]`` tensors; by default ``pred`` and ``label``.
        id_key: the key of each sample whose ``filename_or_obj`` metadata names the row.
    """

    def __init__(
        self,
        output_path: str | os.PathLike,
        output_transform: Callable | None = None,
        id_key: str = "image",
    ) -> None:
        self.output_path = Path(output_path)
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.id_key = id_key
        self.rows: list[dict] = []
        self._class_logits: torch.Tensor | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._keep_class_logits)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _keep_class_logits(self, engine: Engine) -> None:
        self._class_logits = class_logits_of(engine.state.output[CommonKeys.PRED])

    def _collect(self, engine: Engine) -> None:
        samples: Sequence[dict] = engine.state.output
        preds, labels = self.output_transform(engine.state.output)
        batch_logits = [None] * len(samples) if self._class_logits is None else list(self._class_logits)
        for sample, pred, label, class_logits in zip(samples, preds, labels, batch_logits, strict=True):
            pred, label = torch.as_tensor(pred), torch.as_tensor(label)
            dice = compute_dice(pred[None], label[None], include_background=True, ignore_empty=False)
            row = {
                "id": _image_id(sample, self.id_key),
                "dice": float(dice),
                "pred_area": int(pred.sum()),
                "label_area": int(label.sum()),
            }
            if class_logits is not None and class_logits.numel() == 1:
                row["presence"] = float(torch.sigmoid(class_logits.float()).item())
            self.rows.append(row)

    def _write(self, engine: Engine) -> None:
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.output_path.with_name(f".{self.output_path.name}.partial")
        with open(partial, "w", newline="") as f:
            columns = list(self.rows[0]) if self.rows else ["id", "dice", "pred_area", "label_area"]
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(partial, self.output_path)
        mean = sum(row["dice"] for row in self.rows) / max(len(self.rows), 1)
        logger.info(f"Mean Dice over {len(self.rows)} images: {mean:.4f} (per image: {self.output_path})")
