"""``nerveseg bench asme-curve``: ASME's Dice/cost curve over its stop agreement, on trained checkpoints.

Each checkpoint (the league's or the ablations' runs, one per seed) predicts one split of its data set on the
default inference path at its trained size, with ASME stopping at each agreement of the curve and with every
view (:func:`.asme_timing.asme_dice_cost_curve`). Over the checkpoints, a stop agreement meets ASME's target when
its mean Dice is within ``dice_tolerance`` of full ASME's and its mean time at most ``max_cost`` times one view's;
the paired 95% interval of its Dice against full ASME (checkpoints and images resampled) says whether the
tolerance is shown or only met on average. Choose the rule on the validation split, then check it on the test
split.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerveseg.bundle.runs import build_network, config_files
from nerveseg.scripts.bench.asme_timing import CURVE_STOP_AGREEMENTS, asme_curve_markdown, asme_dice_cost_curve
from nerveseg.scripts.bench.execution_paths import inference_settings
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import mean_sd, write_results
from nerveseg.scripts.bench.scoring import paired_bootstrap, split_pairs
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import read_state_dict

__all__ = ["asme_curve", "curve_summary", "network_weights"]


def asme_curve(
    datalist_file: str,
    checkpoints: Sequence[str],
    image_size: Sequence[int],
    bundle_root: str = ".",
    stop_agreements: Sequence[float | None] = CURVE_STOP_AGREEMENTS,
    repeats: int = 3,
    max_cost: float = 2.5,
    dice_tolerance: float = 0.002,
    split: str = "validation",
    out: str = "outputs/bench",
) -> dict[str, Any]:
    """The curve of each checkpoint and their means per stop agreement (``asme_curve.json``, ``asme_curve.md``).

    Args:
        datalist_file: the prepared datalist the checkpoints were trained on.
        checkpoints: weights of train.json's network: a ``model.pt`` or a run's ``last.pt`` (its last epoch).
        image_size: the size they were trained at.
        bundle_root: the bundle folder holding ``configs/``.
        stop_agreements: the points of the curve; ``None`` is full ASME, which the target is measured against.
        repeats: timed rounds per checkpoint.
        max_cost: the target's largest time, in units of one view's.
        dice_tolerance: the target's largest Dice loss against full ASME.
        split: the datalist's split that is predicted: ``validation`` to choose the rule, ``test`` to check it.
        out: folder of the json and md files.
    """
    if None not in stop_agreements:
        raise UserInputError("stop_agreements must include None (full ASME), the curve's reference.")
    if split not in ("validation", "test"):
        raise UserInputError(f"--split is {split!r}; pass validation (to choose the value) or test (to check it).")
    root = Path(bundle_root).resolve()
    pairs = split_pairs(root, datalist_file, image_size, split)
    curves = []
    for checkpoint in checkpoints:
        network = build_network(config_files(root, "configs/train.json"), {"image_size": list(image_size)})
        network.load_state_dict(network_weights(checkpoint))
        curve = asme_dice_cost_curve(
            network, pairs, stop_agreements, settings=inference_settings(root), repeats=repeats
        )
        curves.append({"checkpoint": str(checkpoint), **curve})
        print("\n".join(asme_curve_markdown(curve)), flush=True)
    summary = curve_summary(curves, stop_agreements, max_cost, dice_tolerance)
    result = {
        "machine": describe_machine(),
        "datalist_file": str(datalist_file),
        "split": split,
        "image_size": list(image_size),
        "target": {"max_cost": max_cost, "dice_tolerance": dice_tolerance},
        "summary": summary,
        "curves": curves,
    }
    write_results(Path(out).resolve(), "asme_curve", result, "\n".join(_markdown(result)) + "\n")
    return result


def curve_summary(
    curves: Sequence[dict[str, Any]], stop_agreements: Sequence[float | None], max_cost: float, dice_tolerance: float
) -> list[dict[str, Any]]:
    """Per stop agreement, over the checkpoints' curves: Dice minus full ASME's, paired per checkpoint and image,
    with its 95% interval (:func:`~.scoring.paired_bootstrap`), the cost, and whether the target is met on average
    (``meets_target``) and its Dice tolerance shown by the interval's lower end (``tolerance_shown``)."""
    full = [next(p for p in c["points"] if p["stop_agreement"] is None) for c in curves]
    summary = []
    for stop in stop_agreements:
        points = [next(p for p in c["points"] if p["stop_agreement"] == stop) for c in curves]
        differences = [
            np.subtract(point["dice_per_image"], reference["dice_per_image"])
            for point, reference in zip(points, full, strict=True)
        ]
        loss, low, high = paired_bootstrap(differences)
        cost = statistics.mean(p["x_one_view"] for p in points)
        summary.append(
            {
                "stop_agreement": stop,
                "dice_minus_full": loss,
                "dice_minus_full_interval": [low, high],
                "dice_minus_full_per_checkpoint": [p["dice_minus_full"] for p in points],
                "x_one_view": cost,
                "mean_views_used": statistics.mean(p["mean_views_used"] for p in points),
                "meets_target": loss >= -dice_tolerance and cost <= max_cost,
                "tolerance_shown": low >= -dice_tolerance,
            }
        )
    return summary


def network_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's state dict from a ``model.pt``, or from a training run's ``last.pt`` (its ``network``)."""
    path = Path(path)
    if path.name == "last.pt":
        # TrainingCheckpoints' own file: it also holds NumPy and Python random states, which weights_only refuses.
        return torch.load(path, map_location="cpu", weights_only=False)["network"]
    return read_state_dict(path)


def _markdown(result: dict[str, Any]) -> list[str]:
    target = result["target"]
    lines = [
        "# nerveseg bench asme-curve",
        "",
        f"Measured {result['machine']['summary']}. {len(result['curves'])} checkpoints at "
        f"{'x'.join(map(str, result['image_size']))}, {result['split']} split of {result['datalist_file']} "
        f"({result['curves'][0]['images']} images); target: Dice within {target['dice_tolerance']} of full ASME at "
        f'<= {target["max_cost"]}x one view\'s time. "met": on average; "shown": the interval\'s lower end too '
        "(95%, checkpoints and images resampled, paired).",
        "",
        "| stop agreement | Dice - full ASME, mean ± sd over checkpoints | [95% interval] | x 1 view | mean views used "
        "| target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["summary"]:
        name = "full (every view)" if row["stop_agreement"] is None else f"{row['stop_agreement']:g}"
        loss = mean_sd(row["dice_minus_full_per_checkpoint"], signed=True)
        low, high = row["dice_minus_full_interval"]
        met = ("met, shown" if row["tolerance_shown"] else "met") if row["meets_target"] else "-"
        lines.append(
            f"| {name} | {loss} | [{low:+.4f}, {high:+.4f}] | {row['x_one_view']:.2f} | "
            f"{row['mean_views_used']:.2f} | {met} |"
        )
    return lines
