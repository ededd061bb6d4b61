"""``nerveseg bench quality``: the default recipe trained on the USGRA-seg nerve images, evaluated with the eager
and the default (accelerated) inference paths, so a faster path is seen not to cost Dice."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nerveseg.bundle import runs
from nerveseg.bundle.data.prepare import prepare
from nerveseg.bundle.inference.quantization import quantize_checkpoint
from nerveseg.scripts.bench.results import sample_sd
from nerveseg.utils.errors import UserInputError

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
        row["int8"] = _int8(bundle_root, run / "models" / "model.pt", datalist)
        rows.append(row)
        print(json.dumps(row), flush=True)
    eager = statistics.mean(r["dice_eager"] for r in rows)
    default = statistics.mean(r["dice_default_path"] for r in rows)
    int8 = [r["int8"] for r in rows if "skipped" not in r["int8"]]
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
        "int8_dice_delta": statistics.mean(r["dice_change"] for r in int8) if int8 else None,
        "int8_speedup": statistics.mean(r["speedup"] for r in int8) if int8 else None,
    }


def _int8(bundle_root: str | os.PathLike, checkpoint: Path, datalist: Path) -> dict[str, Any]:
    """``nerveseg quantize`` of a quality run's model on its validation split (its Dice change against OpenVINO
    float32 and the network's speed-up), or why it was skipped."""
    if importlib.util.find_spec("nncf") is None:
        return {"skipped": "NNCF is not installed; install the int8 extra: pip install -e '.[int8]'"}
    try:
        record = quantize_checkpoint(datalist, bundle_root, checkpoint)
    except UserInputError as error:  # e.g. a network OpenVINO cannot run: the trained rows are kept
        return {"skipped": str(error)}
    return {key: record[key] for key in ("accepted", "dice_float32", "dice_int8", "dice_change", "speedup")}


def quality_markdown(result: dict[str, Any]) -> list[str]:
    """The recipe, and per seed the validation mean Dice of both paths, int8's change and speed-up, and the training
    time."""
    q = result
    seeds = [r["seed"] for r in q["runs"]]
    lines = [
        f"Quality: train.json on {q['data']} (nerve), {q['image_size'][0]}x{q['image_size'][1]}, {q['epochs']} epochs, "
        f"lr {q['learning_rate']}, seeds {seeds}; {q['train_s_total'] / 60:.1f} min of training in all.",
        "",
        "| seed | val mean Dice, eager fp32 | val mean Dice, default path | int8 Dice change | int8 speed-up | "
        "training s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in q["runs"]:
        int8 = r.get("int8", {"skipped": "not measured"})
        change, speedup = (
            ("-", "-") if "skipped" in int8 else (f"{int8['dice_change']:+.4f}", f"{int8['speedup']:.2f}x")
        )
        lines.append(
            f"| {r['seed']} | {r['dice_eager']:.4f} | {r['dice_default_path']:.4f} | {change} | {speedup} | "
            f"{r['train_s']:.0f} |"
        )
    lines.append(f"| mean | {q['mean_dice_eager']:.4f} | {q['mean_dice_default_path']:.4f} | | | |")
    skipped = {r["int8"]["skipped"] for r in q["runs"] if "skipped" in r.get("int8", {})}
    lines += ["", *(f"int8 skipped: {reason}" for reason in skipped)] if skipped else []
    lines += [
        "",
        "int8: nerveseg quantize on the validation split (which calibrates and scores): mean Dice through the live "
        "path against OpenVINO float32, and the network's speed-up at batch 1.",
    ]
    return lines
