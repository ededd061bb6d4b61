"""The evaluation report: a row per image, a summary, and figures."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.handlers import from_engine
from monai.utils import CommonKeys

from nerveseg.bundle import plots
from nerveseg.bundle.inference.inferers import SCORE_KEYS
from nerveseg.bundle.metrics import image_scores, summarise
from nerveseg.utils.class_logits import class_logits_of
from nerveseg.utils.files import write_text_atomically

logger = logging.getLogger(__name__)


def _image_id(sample: dict, key: str) -> str:
    meta = getattr(sample[key], "meta", {})
    name = meta.get("filename_or_obj")
    if not name:
        raise KeyError(f"sample['{key}'] carries no 'filename_or_obj' metadata to name its row.")
    return Path(name).stem


class PerImageReport:
    """Score every image as the nerve challenge does, and write ``metrics.csv``, ``summary.json`` and figures.

    Each row holds ``id, dice, iou, sensitivity, specificity, accuracy, pred_area, label_area`` of the final binary
    prediction against its label, at their resolution (the original image size when the evaluation config
    inverts the resize); a ratio with nothing to count is 1, so an empty prediction on an empty label scores 1.
    Optional columns come from the network and the inferer, read from the batch output right after the forward
    pass (inverting the resize in post-processing replaces the prediction's metadata with the image's):

    - ``presence``: the probability of a single class logit (MUNet's head, the two-stage model; see
      :mod:`nerveseg.utils.class_logits`), which ranks images for the presence AUC;
    - ``asme_consistency`` and ``asme_eigenvalue_ratio``: the agreement of an ensemble's views;
    - ``asme_views_used``: how many members the ensemble computed (fewer than all with its early stop).

    ``summary.json`` holds the means, the image-level presence confusion and AUC, and the Spearman correlation
    of consistency with Dice; the figures are ``dice_histogram.png``, ``worst_cases.png`` (the ``num_worst``
    lowest Dice, image in gray, label green, prediction red) and, with an ensemble, ``consistency_vs_dice.png``.
    Every file is written to a temporary name and renamed when the evaluation completes, so an interrupted run
    leaves the previous report intact.

    Args:
        output_path: the CSV file; the other files go beside it.
        output_transform: maps ``engine.state.output`` (a list of per-sample dictionaries) to
            ``(preds, labels)``, each a list of binary ``[1, H, W]`` tensors; by default ``pred`` and ``label``.
        id_key: the key of each sample whose ``filename_or_obj`` metadata names the row.
        num_worst: cases in the worst-cases figure; 0 draws no figures.
    """

    def __init__(
        self,
        output_path: str | os.PathLike,
        output_transform: Callable | None = None,
        id_key: str = "image",
        num_worst: int = 8,
    ) -> None:
        self.output_path = Path(output_path)
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.id_key = id_key
        self.num_worst = num_worst
        self.rows: list[dict] = []
        self._worst: list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]] = []
        self._batch_scores: dict[str, torch.Tensor] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._keep_batch_scores)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self._worst = [], []

    def _keep_batch_scores(self, engine: Engine) -> None:
        pred = engine.state.output[CommonKeys.PRED]
        scores = {}
        class_logits = class_logits_of(pred)
        if class_logits is not None and class_logits.shape[-1] == 1:
            scores["presence"] = torch.sigmoid(class_logits.float()).reshape(-1)
        meta = getattr(pred, "meta", {})
        for key in SCORE_KEYS:  # one number per image becomes a column; the views' weights do not
            values = torch.as_tensor(meta[key]) if key in meta else None
            if values is not None and values.ndim == 1:
                scores[key] = values
        self._batch_scores = scores

    def _collect(self, engine: Engine) -> None:
        samples: Sequence[dict] = engine.state.output
        preds, labels = self.output_transform(engine.state.output)
        for index, (sample, pred, label) in enumerate(zip(samples, preds, labels, strict=True)):
            pred_np, label_np = np.asarray(torch.as_tensor(pred).cpu()), np.asarray(torch.as_tensor(label).cpu())
            row = {"id": _image_id(sample, self.id_key), **image_scores(pred_np, label_np)}
            row.update({key: values[index].item() for key, values in self._batch_scores.items()})
            self.rows.append(row)
            if self.num_worst:
                self._keep_if_worst(row, sample, pred_np, label_np)

    def _keep_if_worst(self, row: dict, sample: dict, pred: np.ndarray, label: np.ndarray) -> None:
        if len(self._worst) >= self.num_worst and row["dice"] >= self._worst[-1][1]:
            return
        image = torch.as_tensor(sample[self.id_key]).float()[:1].cpu()
        if tuple(image.shape[-2:]) != tuple(label.shape[-2:]):  # the image is at network size, the masks are not
            image = F.interpolate(image[None], size=tuple(label.shape[-2:]), mode="bilinear")[0]
        self._worst.append(
            (row["id"], row["dice"], image[0].numpy(), label.reshape(label.shape[-2:]), pred.reshape(pred.shape[-2:]))
        )
        self._worst = sorted(self._worst, key=lambda case: case[1])[: self.num_worst]

    def _write(self, engine: Engine) -> None:
        columns = list(self.rows[0]) if self.rows else ["id", "dice", "pred_area", "label_area"]
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomically(self.output_path, table.getvalue())
        if not self.rows:
            logger.warning(f"No images were evaluated; {self.output_path} has a header only.")
            return
        summary = summarise(self.rows, presence_score="presence")
        folder = self.output_path.parent
        write_text_atomically(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
        if self.num_worst:
            plots.dice_histogram([row["dice"] for row in self.rows], folder / "dice_histogram.png")
            plots.worst_cases(self._worst, folder / "worst_cases.png")
            if "consistency_dice_spearman" in summary:
                rho = summary["consistency_dice_spearman"]["rho"]
                consistency = [row["asme_consistency"] for row in self.rows]
                plots.consistency_vs_dice(
                    consistency, [row["dice"] for row in self.rows], folder / "consistency_vs_dice.png", rho
                )
        auc = "n/a" if summary["presence_auc"] is None else f"{summary['presence_auc']:.4f}"
        confusion = summary["presence_confusion"]
        empty = confusion["false_negative"] + confusion["true_negative"]
        logger.info(
            f"Mean Dice over {len(self.rows)} images: {summary['mean_dice']:.4f} (IoU {summary['mean_iou']:.4f}, "
            f"presence AUC {auc}, predicted empty on {empty}; per image: {self.output_path})"
        )
