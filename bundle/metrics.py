"""Per-image segmentation scores as the nerve challenge counts them, and their summary over a dataset.

Every image counts once, and an empty prediction on an empty label is a perfect score: the challenge's mean Dice
rewards saying "no nerve" on the many frames without one. Image-level presence (is the mask empty or not) is
scored separately, because a gate or a minimum-area rule acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["image_scores", "presence_auc", "summarise"]


def image_scores(pred: np.ndarray, label: np.ndarray) -> dict[str, float | int]:
    """Dice, IoU, sensitivity, specificity and pixel accuracy of one binary prediction against its label.

    Ratios with an empty denominator are 1 (nothing to find and nothing found), as the challenge scores Dice.

    Args:
        pred: binary mask, any shape.
        label: binary mask of the same shape.
    """
    pred, label = np.asarray(pred) > 0, np.asarray(label) > 0
    if pred.shape != label.shape:
        raise ValueError(f"Prediction {pred.shape} and label {label.shape} differ in shape; invert the resize first.")
    tp = int(np.count_nonzero(pred & label))
    fp = int(np.count_nonzero(pred & ~label))
    fn = int(np.count_nonzero(~pred & label))
    tn = pred.size - tp - fp - fn

    def ratio(numerator: int, denominator: int) -> float:
        return 1.0 if denominator == 0 else numerator / denominator

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "accuracy": (tp + tn) / pred.size,
        "pred_area": tp + fp,
        "label_area": tp + fn,
    }


def presence_auc(score: Sequence[float], present: Sequence[bool]) -> float | None:
    """Area under the ROC curve of an image-level score for "the label is not empty"; ``None`` with one class."""
    score, present = np.asarray(score, dtype=float), np.asarray(present, dtype=bool)
    positives, negatives = int(present.sum()), int((~present).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(score)  # the Mann-Whitney form, with ties counted half
    return float((ranks[present].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def summarise(rows: Sequence[dict], presence_score: str | None = None) -> dict:
    """Dataset summary of per-image rows from :func:`image_scores` (plus optional score columns).

    Args:
        rows: one dictionary per image with at least ``dice``, ``iou``, ``sensitivity``, ``specificity``,
            ``accuracy``, ``pred_area`` and ``label_area``.
        presence_score: the column that ranks images for the presence AUC (a classifier's ``presence``); by
            default the predicted area, so the AUC says how well "something was predicted" separates the images
            with a structure from those without.

    Returns:
        means of the per-image scores, the image-level presence confusion (predicted non-empty vs label
        non-empty), the presence AUC, when rows carry ``asme_consistency``, its Spearman rank correlation
        with Dice, and when they carry ``asme_views_used``, its mean (``mean_asme_views_used``).
    """
    if not rows:
        raise ValueError("No images to summarise.")
    present = np.array([row["label_area"] > 0 for row in rows])
    predicted = np.array([row["pred_area"] > 0 for row in rows])
    score_key = presence_score if presence_score and presence_score in rows[0] else "pred_area"
    summary: dict = {
        "images": len(rows),
        **{
            f"mean_{key}": float(np.mean([row[key] for row in rows]))
            for key in ("dice", "iou", "sensitivity", "specificity", "accuracy")
        },  # fmt: skip
        "presence_confusion": {
            "true_positive": int((predicted & present).sum()),
            "false_positive": int((predicted & ~present).sum()),
            "false_negative": int((~predicted & present).sum()),
            "true_negative": int((~predicted & ~present).sum()),
        },
        "presence_auc": presence_auc([row[score_key] for row in rows], present),
        "presence_auc_score": score_key,
    }
    if "asme_views_used" in rows[0]:
        summary["mean_asme_views_used"] = float(np.mean([row["asme_views_used"] for row in rows]))
    if "asme_consistency" in rows[0] and len(rows) > 2:
        correlation = stats.spearmanr([row["asme_consistency"] for row in rows], [row["dice"] for row in rows])
        summary["consistency_dice_spearman"] = {"rho": float(correlation.statistic), "p": float(correlation.pvalue)}
    return summary
