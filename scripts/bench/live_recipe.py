"""``nerveseg bench live-recipe``: what configs/live.json's smaller input and narrower network cost in Dice.

Beside the default and live recipes it trains the default network at the live size, and the live network at twice
the width: what each of the live recipe's two changes costs, and why the width is a quarter of BasicUNet's.

Each recipe is trained with train.json on the league's USGRA-seg split, at the same epochs, batch size and seeds
(so every recipe sees the same images), and its ``model.pt`` is scored frame by frame through
:class:`~nerveseg.bundle.inference.streaming.StreamingSegmenter`, the live path, which gives inference.json's masks:
the challenge Dice at each label's own size, on the validation split (which also chose ``model.pt``'s epoch) and on
the test split (which nothing chose). The live recipe is compared with the default one by paired per-image
differences over seeds and images (:func:`~.scoring.paired_bootstrap`), with what would narrow the interval: more
seeds or more images (:func:`~.scoring.interval_sources`).

Resumable: ``live_recipe.json`` gains each run's row as it ends, and the same command skips the runs already there
with the same settings and config files. A 448x576 run took 19-27 minutes on two CPU cores: run a few seeds or
one recipe at a time (``--seeds``, ``--recipes``).
"""

from __future__ import annotations

import gc
import json
import math
import re
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nerveseg.bundle import runs
from nerveseg.bundle.inference.quantization import quantize_checkpoint
from nerveseg.bundle.inference.streaming import StreamingSegmenter, labelled_frames, streaming_dice
from nerveseg.scripts.bench.league import DATASETS, QUICK_RECIPE, config_digest, prepare_split
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import mean_sd, write_results
from nerveseg.scripts.bench.scoring import interval_sources, paired_bootstrap
from nerveseg.utils.errors import UserInputError

__all__ = ["LIVE_RECIPES", "live_recipe", "live_recipe_markdown"]

LIVE_RECIPES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "default": ([], {}),
    "default network at 224x288": ([], {"image_size": [224, 288]}),
    "live (configs/live.json)": (["configs/live.json"], {}),
    "live at twice the width": (["configs/live.json"], {"network_def#features": [16, 16, 32, 64, 128, 16]}),
}
"""Recipe name to (override files stacked on train.json and inference.json, id-value overrides)."""

BASELINE, CANDIDATE = "default", "live (configs/live.json)"
SPLITS = ("validation", "test")
RUN_KEYS = ("recipe", "seed", "overrides", "configs", "dice", "train_seconds")
"""What each run in a results file holds: the keys a resumed batch matches on, and what the comparison reads."""


def live_recipe(
    data_root: str = "../shared/data",
    out: str = "outputs/bench",
    bundle_root: str = ".",
    seeds: Sequence[int] = (0, 1, 2),
    recipes: Sequence[str] = tuple(LIVE_RECIPES),
    num_epochs: int = DATASETS["usgra_seg"]["num_epochs"],
    tolerance: float = 0.01,
    int8: bool = False,
    quick: bool = False,
) -> dict[str, Any]:
    """Train and score each recipe of :data:`LIVE_RECIPES` per seed; write ``live_recipe.json`` and ``.md``.

    Args:
        data_root: the folder holding ``usgra_seg/``.
        out: folder of the results; the runs go in ``out/live_recipe/``.
        bundle_root: the bundle folder holding ``configs/``.
        seeds: one run of each recipe per seed.
        recipes: names of :data:`LIVE_RECIPES` to run.
        num_epochs: every recipe's training epochs (default: the league's for USGRA-seg).
        tolerance: the largest Dice loss of the live recipe against the default one that the goal allows.
        int8: also quantize each run's model (``nerveseg quantize`` on the validation split; runs already in the
            results are quantized where they have no int8 figures yet) and report int8's Dice change and speed-up.
        quick: a handful of images, 64x64-sized runs of two epochs, seed 0 (a smoke run; do not quote it).
    """
    recipes = [recipes] if isinstance(recipes, str) else list(recipes)  # fire gives one name as a string
    seeds = [0] if quick else ([seeds] if isinstance(seeds, int) else list(seeds))
    unknown = [name for name in recipes if name not in LIVE_RECIPES]
    if unknown:
        raise UserInputError(f"Unknown recipes {unknown}; choose from {list(LIVE_RECIPES)}.")
    if not 0 < tolerance < 1:
        raise UserInputError(
            f"--tolerance must be in (0, 1), the largest Dice loss allowed (e.g. 0.01), got {tolerance}."
        )
    source = Path(data_root) / "usgra_seg"
    if not (source / "images").is_dir():
        raise UserInputError(f"{source / 'images'} not found; pass --data_root, the folder holding usgra_seg/.")
    folder = Path(out).resolve()
    name = "live_recipe_quick" if quick else "live_recipe"
    datalist = prepare_split(source, folder / name / "data", DATASETS["usgra_seg"]["prepare"], quick)
    frames = {split: labelled_frames(datalist, split) for split in SPLITS}
    settings = {"num_epochs": 2 if quick else int(num_epochs)}
    result = _previous_result(folder / f"{name}.json", settings, tolerance)
    for recipe in recipes:
        files, overrides = LIVE_RECIPES[recipe]
        if quick:
            overrides = {**overrides, "image_size": QUICK_RECIPE["image_size"]}
        digest = config_digest(bundle_root, ["configs/train.json", "configs/inference.json", *files])
        for seed in seeds:
            key = {"recipe": recipe, "seed": seed, "overrides": overrides, "configs": digest}
            run = folder / name / "runs" / re.sub(r"\W+", "_", recipe).strip("_") / f"seed{seed}"
            row = next((r for r in result["rows"] if all(r.get(k) == v for k, v in key.items())), None)
            if row is None:
                row = {**key, **_train_and_score(bundle_root, run, files, overrides, seed, datalist, frames, settings)}
                result["rows"] = [r for r in result["rows"] if (r["recipe"], r["seed"]) != (recipe, seed)] + [row]
            elif not int8 or "int8" in row:
                print(f"{recipe} | seed {seed}: in {name}.json already, skipped.", flush=True)
                continue
            if int8 and "int8" not in row:
                row["int8"] = _int8(bundle_root, run, files, overrides, datalist)
                print(f"{recipe} | seed {seed}: int8 {row['int8']['reason']}", flush=True)
            _save(folder, name, result)  # after each run: an interrupted batch keeps what it finished
    _save(folder, name, result)  # also when every run was there: the comparison at this --tolerance
    return result


def _save(folder: Path, name: str, result: dict[str, Any]) -> None:
    """Compare the rows so far at the result's tolerance and write ``{name}.json`` and ``.md``."""
    result["comparison"] = _comparison(result["rows"], result["tolerance"])
    write_results(folder, name, result, live_recipe_markdown(result))


def _train_and_score(
    bundle_root: str,
    run: Path,
    files: Sequence[str],
    overrides: dict[str, Any],
    seed: int,
    datalist: Path,
    frames: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Train one recipe and seed into ``run`` and score its ``model.pt`` through the live path on each split."""
    shutil.rmtree(run, ignore_errors=True)  # a stopped run's files
    start = time.perf_counter()
    runs.train(
        bundle_root,
        ["configs/train.json", *files],
        run,
        seed=seed,
        datalist_file=str(datalist),
        num_epochs=settings["num_epochs"],
        **overrides,
    )
    seconds = time.perf_counter() - start
    gc.collect()
    segmenter = StreamingSegmenter.from_bundle(
        bundle_root, run / "models" / "model.pt", ["configs/inference.json", *files], overrides=overrides
    )
    dice = {split: streaming_dice(segmenter, frames[split]) for split in SPLITS}
    means = ", ".join(f"{split} {statistics.mean(values):.4f}" for split, values in dice.items())
    print(f"{run}: {means} ({seconds:.0f} s)", flush=True)
    return {"dice": dice, "train_seconds": seconds, "machine": describe_machine()["summary"]}


def _int8(
    bundle_root: str, run: Path, files: Sequence[str], overrides: dict[str, Any], datalist: Path
) -> dict[str, Any]:
    """``nerveseg quantize`` of the run's ``model.pt`` on the validation split: int8's Dice change and speed-up."""
    checkpoint, configs = run / "models" / "model.pt", ["configs/inference.json", *files]
    record = quantize_checkpoint(datalist, bundle_root, checkpoint, configs, overrides=overrides)
    keys = ("accepted", "reason", "dice_float32", "dice_int8", "dice_change", "network_ms_float32", "network_ms_int8")
    return {key: record[key] for key in (*keys, "speedup", "threads")}


def _comparison(rows: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Each other recipe minus the default, per split: the paired mean difference and its 95% interval over the
    seeds both ran, whether the interval's low end is within ``tolerance``, and the interval's half-width from the
    seeds alone and the images alone (:func:`~.scoring.interval_sources`)."""
    comparison: dict[str, Any] = {}
    baseline = {row["seed"]: row["dice"] for row in rows if row["recipe"] == BASELINE}
    for recipe in dict.fromkeys(row["recipe"] for row in rows if row["recipe"] != BASELINE):
        other = {row["seed"]: row["dice"] for row in rows if row["recipe"] == recipe}
        seeds = sorted(set(baseline) & set(other))
        if not seeds:
            continue
        comparison[recipe] = {"seeds": seeds}
        for split in SPLITS:
            differences = [np.subtract(other[s][split], baseline[s][split]) for s in seeds]
            mean, low, high = paired_bootstrap(differences)
            comparison[recipe][split] = {
                "mean": mean,
                "low": low,
                "high": high,
                "within_tolerance": low >= -tolerance,
                "num_images": len(differences[0]),
                "half_width_from": interval_sources(differences),
            }
    return comparison


def _previous_result(path: Path, settings: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """The results of earlier batches with the same settings, or a fresh result. The tolerance is not a setting:
    it only changes the comparison, which every call recomputes."""
    fresh = {"machine": describe_machine(), "settings": settings, "tolerance": tolerance, "rows": [], "comparison": {}}
    if not path.is_file():
        return fresh
    try:
        previous = json.loads(path.read_text())
        rows = previous["rows"]
        previous_settings = {key: value for key, value in previous["settings"].items() if key != "tolerance"}  # 0.15.0
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise UserInputError(
            f"{path} is not a live-recipe result ({error}); move it away or pass another --out."
        ) from None
    if previous_settings != settings:
        raise UserInputError(
            f"{path} holds runs with settings {previous_settings}, not {settings}; move it away or pass another --out."
        )
    if not isinstance(rows, list):
        raise UserInputError(f"{path}: rows is not a list of runs; move the file away or pass another --out.")
    for number, row in enumerate(rows):
        if not _is_run(row):
            raise UserInputError(
                f"{path}: row {number} is not a run (it needs {list(RUN_KEYS)}, with a list of Dice per split in "
                f"{list(SPLITS)}); move the file away or pass another --out."
            )
    return {**fresh, "rows": rows}


def _is_run(row: Any) -> bool:
    """Whether ``row`` is one run as :func:`live_recipe` writes it, so that resuming and comparing can read it."""
    return (
        isinstance(row, dict)
        and all(key in row for key in RUN_KEYS)
        and isinstance(row["dice"], dict)
        and all(isinstance(row["dice"].get(split), list) for split in SPLITS)
    )


def live_recipe_markdown(result: dict[str, Any]) -> str:
    """Each recipe's Dice per split (mean ± sd over seeds of the per-seed mean) and its paired change, what would
    narrow the change's interval, and int8's Dice change and speed-up where the runs were quantized."""
    settings = result["settings"]
    lines = [
        "# nerveseg bench live-recipe",
        "",
        f"Measured {result['machine']['summary']}. USGRA-seg, the league's split; every recipe trained with "
        f"train.json for {settings['num_epochs']} epochs on the same images and seeds; model.pt scored through the "
        "live path (StreamingSegmenter: inference.json's masks) at each label's own size. Validation chose model.pt's "
        "epoch; test did not. Δ: minus the default recipe, paired by seed and image, 95% interval from a two-level "
        f"bootstrap; the goal allows a loss of at most {result['tolerance']}.",
        "",
        "| recipe | validation Dice | test Dice | Δ validation [95%] | Δ test [95%] | n | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for recipe in dict.fromkeys(row["recipe"] for row in result["rows"]):
        rows = [row for row in result["rows"] if row["recipe"] == recipe]
        means = {split: mean_sd([statistics.mean(row["dice"][split]) for row in rows]) for split in SPLITS}
        change = result["comparison"].get(recipe, {})
        delta = {
            split: f"{change[split]['mean']:+.4f} [{change[split]['low']:+.4f}, {change[split]['high']:+.4f}]"
            if split in change
            else "-"
            for split in SPLITS
        }
        seconds = statistics.mean(row["train_seconds"] for row in rows)
        lines.append(
            f"| {recipe} | {means['validation']} | {means['test']} | {delta['validation']} | {delta['test']} | "
            f"{len(rows)} | {seconds:.0f} |"
        )
    lines += _interval_sources_markdown(result["comparison"], result["tolerance"])
    quantized = [row for row in result["rows"] if "int8" in row]
    if quantized:
        lines += [
            "",
            "int8 (nerveseg quantize on the validation split, which calibrates and scores): validation Dice change "
            "against OpenVINO float32 and the network's speed-up at batch 1, mean ± sd over seeds.",
            "",
            "| recipe | accepted | Dice change | network ms float32 | network ms int8 | speed-up |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for recipe in dict.fromkeys(row["recipe"] for row in quantized):
            runs_int8 = [row["int8"] for row in quantized if row["recipe"] == recipe]
            accepted = sum(bool(r["accepted"]) for r in runs_int8)
            change = mean_sd([r["dice_change"] for r in runs_int8], signed=True)
            lines.append(
                f"| {recipe} | {accepted}/{len(runs_int8)} | {change}"
                f" | {statistics.mean(r['network_ms_float32'] for r in runs_int8):.1f}"
                f" | {statistics.mean(r['network_ms_int8'] for r in runs_int8):.1f}"
                f" | {statistics.mean(r['speedup'] for r in runs_int8):.2f}x |"
            )
    return "\n".join(lines) + "\n"


def _interval_sources_markdown(comparison: dict[str, Any], tolerance: float) -> list[str]:
    """What would narrow each interval: its half-width from the seeds alone and the images alone, and about how
    many seeds or images would bring that part alone to ``tolerance``."""
    if not comparison:
        return []
    lines = [
        "",
        "What narrows Δ's interval: its half-width with only the seeds, or only the images, resampled, and about how "
        f"many seeds or images would bring that part alone to ±{tolerance} (a half-width shrinks about as one over "
        "the square root of the count). The parts add up (roughly as the root of the sum of squares), so each count "
        "is a lower bound for the whole interval; with few seeds the seeds' part is underestimated.",
        "",
        "| recipe | split | half-width | from seeds | from images | seeds for it | images for it |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for recipe, change in comparison.items():
        num_seeds = len(change["seeds"])
        for split in SPLITS:
            row = change[split]
            spread = row["half_width_from"]
            needed_seeds = math.ceil(num_seeds * (spread["seeds"] / tolerance) ** 2) if num_seeds > 1 else "-"
            lines.append(
                f"| {recipe} | {split} | {(row['high'] - row['low']) / 2:.4f} | {spread['seeds']:.4f} | "
                f"{spread['images']:.4f} | {needed_seeds} | "
                f"{math.ceil(row['num_images'] * (spread['images'] / tolerance) ** 2)} |"
            )
    return lines
