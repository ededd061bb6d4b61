"""``nerveseg bench recipe``: validation Dice of the default recipe, with EMS and with SWA, same data and seeds.

Each run's figures come from its evaluator's state after each validation (:func:`.scoring.record_validations`) and
from the SWA handler. ``recipe.json`` gains each run's row as it ends; with ``reuse`` a rerun keeps the rows of the
same settings and trains only the runs missing, to finish an interrupted benchmark.
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.handlers import MetricLogger

from nerveseg.bundle import runs
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import mean_sd, write_results
from nerveseg.scripts.bench.scoring import record_validations, validation_dice
from nerveseg.utils.errors import UserInputError

__all__ = ["RECIPE_VARIANTS", "recipe", "run_dice"]

RECIPE_VARIANTS = {"default": [], "EMS": ["configs/training/ems.json"], "SWA": ["configs/training/swa.json"]}
"""Variant name to the override files stacked on train.json."""


def run_dice(per_validation: Sequence[float], swa: float | None) -> dict[str, float | None]:
    """A run's validation mean Dice: its best and last epoch and its SWA weights', from each validation in order
    (``per_validation``, where SWA's comes last when it ran) and the SWA handler's own figure (``None`` without)."""
    epochs = list(per_validation[:-1] if swa is not None else per_validation)
    return {"best": max(epochs, default=None), "last": epochs[-1] if epochs else None, "swa": swa}


def recipe(
    datalist_file: str,
    bundle_root: str = ".",
    image_size: tuple[int, int] = (128, 128),
    num_epochs: int = 25,
    learning_rate: float = 0.002,
    seeds: Sequence[int] = (0, 1, 2),
    out: str = "outputs/bench",
    reuse: bool = False,
) -> list[dict]:
    """Validation mean Dice of the default recipe, with EMS, and with SWA: same data, seeds and epochs.

    Each variant stacks its override file on train.json (:data:`RECIPE_VARIANTS`); every run trains from scratch,
    in this process, in ``out/recipe/{variant}/seed{s}``.

    Args:
        datalist_file: a prepared datalist (``nerveseg prepare``), e.g. of the USGRA-seg nerve images.
        bundle_root: the bundle folder holding ``configs/``.
        image_size: training size.
        num_epochs: epochs per run.
        learning_rate: the runs' learning rate.
        seeds: one run per seed and variant.
        out: folder of ``recipe.json``, ``recipe.md`` and the runs (``recipe/``).
        reuse: keep the rows of ``recipe.json`` with these settings and train only the runs missing.
    """
    if not Path(datalist_file).is_file():
        raise UserInputError(f"datalist_file {datalist_file} not found; write one with `nerveseg prepare`.")
    folder, seeds = Path(out).resolve(), list(seeds)
    settings = {
        "datalist_file": str(Path(datalist_file).resolve()),
        "image_size": list(image_size),
        "num_epochs": num_epochs,
        "learning_rate": learning_rate,
    }
    kept = _previous_rows(folder / "recipe.json", settings) if reuse else []
    results = []
    for variant, overrides in RECIPE_VARIANTS.items():
        for seed in seeds:
            row = next((r for r in kept if r["variant"] == variant and r["seed"] == seed), None)
            if row is None:
                row = _run(bundle_root, folder / "recipe" / variant.lower() / f"seed{seed}", overrides, settings, seed)
                row = {"variant": variant, "seed": seed, **row, "settings": settings}
                print(json.dumps(row), flush=True)
            results.append(row)
            text = f"{Path(datalist_file)}, {list(image_size)}, {num_epochs} epochs, lr {learning_rate}, seeds {seeds}"
            write_results(folder, "recipe", results, "\n".join(_recipe_table(results, text)) + "\n")
    return results


def _run(bundle_root: str, run: Path, overrides: list[str], settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one variant and seed from scratch; its Dice figures and seconds."""
    shutil.rmtree(run, ignore_errors=True)  # a stopped run's files
    history = MetricLogger()
    start = time.perf_counter()
    workflow = runs.train(
        bundle_root,
        ["configs/train.json", *overrides],
        run,
        before_run=record_validations(history),
        seed=seed,
        **settings,
    )
    seconds = time.perf_counter() - start
    swa = workflow.parser.get_parsed_content("train#swa").swa_metric
    gc.collect()
    return {**run_dice(validation_dice(history), None if swa is None else round(swa, 4)), "seconds": seconds}


def _previous_rows(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of an earlier ``recipe.json`` trained with ``settings``."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict) and r.get("settings") == settings]


def _recipe_table(results: list[dict], settings: str) -> list[str]:
    lines = [
        f"{settings}; {describe_machine()['summary']}.",
        "",
        "| recipe | best-epoch val Dice, mean ± sd | last-epoch val Dice | SWA weights val Dice |",
        "|---|---|---|---|",
    ]
    for variant in RECIPE_VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        cells = []
        for key in ("best", "last", "swa"):
            values = [r[key] for r in rows if r[key] is not None]
            cells.append(mean_sd(values) if len(values) > 1 else "-")
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    return lines
