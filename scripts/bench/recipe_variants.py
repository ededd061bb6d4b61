"""``nerveseg bench recipe``: validation Dice of the default recipe, with EMS and with SWA, same data and seeds."""

from __future__ import annotations

import gc
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

from nerveseg.bundle import runs
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import mean_sd, write_results
from nerveseg.utils.errors import UserInputError

__all__ = ["RECIPE_VARIANTS", "read_run_log", "recipe"]

RECIPE_VARIANTS = {"default": [], "EMS": ["configs/training/ems.json"], "SWA": ["configs/training/swa.json"]}
"""Variant name to the override files stacked on train.json."""


def read_run_log(log: str) -> dict[str, float | None]:
    """Validation mean Dice of a finished run, read from its train.log: best epoch, last epoch, SWA weights."""
    training, _, after = log.partition("SWA: ")  # the SWA evaluation logs one more epoch line
    epochs = [float(v) for v in re.findall(r"Epoch\[\d+\] Metrics -- val_mean_dice: ([\d.]+)", training)]
    swa = re.search(r"SWA over epochs .*: val val_mean_dice ([\d.]+)", after)
    return {
        "best": max(epochs) if epochs else None,
        "last": epochs[-1] if epochs else None,
        "swa": float(swa.group(1)) if swa else None,
    }


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
    in this process, in ``out/recipe/{variant}/seed{s}``; the figures are read from each run's train.log.

    Args:
        datalist_file: a prepared datalist (``nerveseg prepare``), e.g. of the USGRA-seg nerve images.
        bundle_root: the bundle folder holding ``configs/``.
        image_size: training size.
        num_epochs: epochs per run.
        learning_rate: the runs' learning rate.
        seeds: one run per seed and variant.
        out: folder of ``recipe.json``, ``recipe.md`` and the runs (``recipe/``).
        reuse: keep runs whose log already shows the last epoch (to finish an interrupted benchmark).
    """
    if not Path(datalist_file).is_file():
        raise UserInputError(f"datalist_file {datalist_file} not found; write one with `nerveseg prepare`.")
    folder, seeds = Path(out).resolve(), list(seeds)
    results = []
    for variant, overrides in RECIPE_VARIANTS.items():
        for seed in seeds:
            run = folder / "recipe" / variant.lower() / f"seed{seed}"
            log = run / "outputs" / "train.log"
            done = reuse and log.is_file() and f"Epoch[{num_epochs}] Metrics -- val_mean_dice" in log.read_text()
            start = time.perf_counter()
            if not done:
                log.unlink(missing_ok=True)  # the log is appended to; an earlier run's lines would count again
                runs.train(
                    bundle_root,
                    ["configs/train.json", *overrides],
                    run,
                    datalist_file=str(Path(datalist_file).resolve()),
                    image_size=list(image_size),
                    num_epochs=num_epochs,
                    learning_rate=learning_rate,
                    seed=seed,
                )
                gc.collect()
            row = {"variant": variant, "seed": seed, "seconds": None if done else time.perf_counter() - start}
            row.update(read_run_log(log.read_text()))
            results.append(row)
            print(json.dumps(row), flush=True)
    settings = f"{Path(datalist_file)}, {list(image_size)}, {num_epochs} epochs, lr {learning_rate}, seeds {seeds}"
    write_results(folder, "recipe", results, "\n".join(_recipe_table(results, settings)) + "\n")
    return results


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
