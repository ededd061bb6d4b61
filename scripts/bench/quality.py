"""``nerveseg bench quality``: the default recipe trained on the USGRA-seg nerve images, evaluated with the eager
and the default (accelerated) inference paths, so a faster path is seen not to cost Dice."""

from __future__ import annotations

import gc
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nerveseg.bundle import runs
from nerveseg.bundle.data.prepare import prepare
from nerveseg.scripts.bench.results import sample_sd

__all__ = ["QUALITY_RECIPE", "measure_quality", "quality_markdown"]

QUALITY_RECIPE = {"image_size": [128, 128], "num_epochs": 25, "learning_rate": 0.002}
"""train.json's overrides for the quality runs (quick mode: 64x64, 2 epochs); the same as ``bench recipe``'s."""

EVALUATIONS = {"eager": ["configs/eager.json"], "default_path": []}
"""Evaluation name to the override files stacked on train.json + evaluate.json."""


def measure_quality(
    bundle_root: str | os.PathLike, data: Path, folder: Path, seeds: Sequence[int], quick: bool
) -> dict[str, Any]:
    """Train the default recipe on USGRA-seg nerve masks per seed; evaluate each with the eager and default paths.

    The images are prepared once with ``nerveseg prepare folders``'s defaults (nerve = class 1; fold 0 of 5 is the
    validation split). Training is train.json with :data:`QUALITY_RECIPE`; each evaluation is evaluate.json at
    the original image size, on the validation split.
    """
    datalist = folder / "data" / "datalist.json"
    if not datalist.is_file():
        prepare("folders", src=str(data), out=str(datalist), target_class=1)
    recipe = {**QUALITY_RECIPE, **({"image_size": [64, 64], "num_epochs": 2} if quick else {})}
    rows = []
    for seed in seeds:
        run = folder / f"seed{seed}"
        start = time.perf_counter()
        runs.train(bundle_root, ["configs/train.json"], run, datalist_file=str(datalist), seed=seed, **recipe)
        gc.collect()  # the finished run's datasets and network
        row = {"seed": seed, "train_s": time.perf_counter() - start}
        for name, extra in EVALUATIONS.items():
            output = run / ("eval_" + ("_".join(Path(e).stem for e in extra) or "default"))
            summary = runs.evaluate(
                bundle_root,
                ["configs/train.json", "configs/evaluate.json", *extra],
                output,
                datalist_file=str(datalist),
                ckpt_dir=str(run / "models"),
                image_size=recipe["image_size"],
            )
            row[f"dice_{name}"] = summary["mean_dice"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    eager = statistics.mean(r["dice_eager"] for r in rows)
    default = statistics.mean(r["dice_default_path"] for r in rows)
    return {
        "data": str(data),
        "image_size": list(recipe["image_size"]),
        "epochs": recipe["num_epochs"],
        "learning_rate": recipe["learning_rate"],
        "runs": rows,
        "mean_dice_eager": eager,
        "mean_dice_default_path": default,
        "sd_dice_default_path": sample_sd([r["dice_default_path"] for r in rows]),
        "default_minus_eager": default - eager,
        "train_s_total": sum(r["train_s"] for r in rows),
    }


def quality_markdown(result: dict[str, Any]) -> list[str]:
    """The recipe, and per seed the validation mean Dice of both paths and the training time."""
    q = result
    seeds = [r["seed"] for r in q["runs"]]
    lines = [
        f"Quality: train.json on {q['data']} (nerve), {q['image_size'][0]}x{q['image_size'][1]}, {q['epochs']} epochs, "
        f"lr {q['learning_rate']}, seeds {seeds}; {q['train_s_total'] / 60:.1f} min of training in all.",
        "",
        "| seed | val mean Dice, eager fp32 | val mean Dice, default path | training s |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['seed']} | {r['dice_eager']:.4f} | {r['dice_default_path']:.4f} | {r['train_s']:.0f} |"
        for r in q["runs"]
    ]
    lines.append(f"| mean | {q['mean_dice_eager']:.4f} | {q['mean_dice_default_path']:.4f} | |")
    return lines
