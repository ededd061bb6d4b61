"""``nerveseg bench ablations``: one change at a time to the default recipe, scored on the league's validation split.

The league (:mod:`.league`) says whether the default recipe wins; where it does not, these runs say why. Each
ablation stacks override files and id-value overrides on train.json (on top of ``--base``, the recipe under
study), trains on the league's prepared training split at the league's size and epochs, and is read from its
evaluator's state after each validation: validation mean Dice of the best and of the last epoch (train.json's
evaluator: the training size, threshold 0.5, no post-processing). The best epoch is the figure the shipped recipe
keeps, but it is a maximum over epochs, so it is biased upwards; the last epoch is not, and a recipe that converges
has the two close. Nothing here reads the test split.

Batches of ablations resume: ``ablations.json`` (``ablations_<digest>.json`` for another ``--base``, which
:func:`results_name` names) gains each run's row as it ends, and a rerun skips the runs already
there with the same settings and config files (a run whose settings or files changed is run again and replaces
its row).
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.handlers import MetricLogger

from nerveseg.bundle import runs
from nerveseg.scripts.bench.league import DATASETS, config_digest, prepare_split
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.network_table import FLEXIBLE_UNET_CONFIG
from nerveseg.scripts.bench.results import mean_sd, write_results
from nerveseg.scripts.bench.scoring import record_validations, validation_dice
from nerveseg.utils.errors import UserInputError

__all__ = ["ABLATIONS", "ablations", "ablations_markdown", "results_name"]

ABLATIONS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "base": ([], {}),
    "learning rate 5e-4": ([], {"learning_rate": 5e-4}),
    "learning rate 2e-3": ([], {"learning_rate": 2e-3}),
    "learning rate 4e-3": ([], {"learning_rate": 4e-3}),
    "batch size 4": ([], {"batch_size": 4}),
    "warm-up": (["configs/training/warmup.json"], {}),
    "Dice + cross-entropy loss": (["configs/losses/bce_dice.json"], {}),
    "EMS": (["configs/training/ems.json"], {}),
    "intensity augmentation at p 0.5": ([], {"train#augmentation#2#prob": 0.5, "train#augmentation#3#prob": 0.5}),
    "per-image intensity scaling": ([], {"load_transforms#2": {"_target_": "ScaleIntensityd", "keys": "image"}}),
    "input size 128x128": ([], {"image_size": [128, 128]}),
    "SGD Nesterov + poly": (["configs/training/sgd_poly.json"], {}),
    "Dice (batch) + cross-entropy": (["configs/losses/dice_ce_batch.json"], {}),
    "z-score per image": (["configs/preprocessing/zscore.json"], {}),
    "nnU-Net-like augmentation": (["configs/augmentation/nnunet.json"], {}),
    "BasicUNet with instance norm": ([], {"network_def#norm": ["instance", {"affine": True}]}),
    "BasicUNet at half width": ([], {"network_def#features": [16, 16, 32, 64, 128, 16]}),
    "BasicUNet with deep supervision": (["configs/networks/basic_unet_deep_supervision.json"], {}),
    "FlexibleUNet-b1 (0.9's network)": ([FLEXIBLE_UNET_CONFIG], {}),
    "FlexibleUNet-b1, batch-norm momentum 0.01": ([FLEXIBLE_UNET_CONFIG], {"bn_momentum": 0.01}),
    "FlexibleUNet-b1, no drop-connect": ([FLEXIBLE_UNET_CONFIG], {"drop_connect_rate": 0.0}),
    "FlexibleUNet-b0": ([FLEXIBLE_UNET_CONFIG], {"network_def#backbone": "efficientnet-b0"}),
    "FlexibleUNet-b2": ([FLEXIBLE_UNET_CONFIG], {"network_def#backbone": "efficientnet-b2"}),
    "FlexibleUNet-b1 with deep supervision": (["configs/networks/flexible_unet_deep_supervision.json"], {}),
}
"""Ablation name to (override files, id-value overrides), each stacked on train.json and ``--base``."""


def ablations(
    data_root: str = "../shared/data",
    out: str = "outputs/bench",
    bundle_root: str = ".",
    seeds: Sequence[int] = (0,),
    datasets: Sequence[str] = tuple(DATASETS),
    names: Sequence[str] = tuple(ABLATIONS),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train each ablation of :data:`ABLATIONS` on each league data set and seed; write ``ablations.json`` and
    ``ablations.md`` into ``out``.

    Args:
        data_root: the folder holding the league's data sets.
        out: folder of the results; the runs go in ``out/ablations/``, the prepared data in ``out/league/data``
            (the league's own split, prepared again the same way).
        bundle_root: the bundle folder holding ``configs/``.
        seeds: one run of each ablation per seed.
        datasets: names of the league's :data:`~.league.DATASETS`.
        names: the ablations to run, names of :data:`ABLATIONS`.
        base: id-value overrides under every ablation (the recipe under study, e.g. ``{"learning_rate": 0.002}``).
    """
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)  # fire gives one name as a string
    names = [names] if isinstance(names, str) else list(names)
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    unknown = [n for n in datasets if n not in DATASETS] + [n for n in names if n not in ABLATIONS]
    if unknown:
        raise UserInputError(
            f"Unknown data sets or ablations {unknown}; choose from {list(DATASETS)} and {list(ABLATIONS)}."
        )
    folder = Path(out).resolve()
    base = dict(base or {})
    name_of_results = results_name(base)
    results_file = folder / f"{name_of_results}.json"
    result = _previous_result(results_file, base)
    result["settings"].update(_settings(datasets))
    for dataset in datasets:
        recipe = DATASETS[dataset]
        datalist = prepare_split(Path(data_root) / dataset, folder / "league" / "data" / dataset, recipe["prepare"])
        for name in names:
            files, overrides = ABLATIONS[name]
            digest = config_digest(bundle_root, ["configs/train.json", *files])
            settings = {"image_size": recipe["image_size"], "num_epochs": recipe["num_epochs"], **base, **overrides}
            for seed in seeds:
                key = {"dataset": dataset, "ablation": name, "seed": seed, "settings": settings, "configs": digest}
                if any(all(r.get(k) == v for k, v in key.items()) for r in result["rows"]):
                    print(f"{dataset} | {name} | seed {seed}: in {results_file} already, skipped.")
                    continue
                run = folder / "ablations" / dataset / name.replace(" ", "_") / f"seed{seed}"
                shutil.rmtree(run, ignore_errors=True)  # a stopped run's files
                history = MetricLogger()  # each validation's metrics, from the evaluator's state
                start = time.perf_counter()
                runs.train(
                    bundle_root,
                    ["configs/train.json", *files],
                    run,
                    before_run=record_validations(history),
                    seed=seed,
                    datalist_file=str(datalist),
                    **settings,
                )
                seconds = time.perf_counter() - start
                gc.collect()
                dice = validation_dice(history)
                if not dice:
                    raise RuntimeError(f"{run} made no validation; set val_interval <= num_epochs.")
                stale = {k: key[k] for k in ("dataset", "ablation", "seed")}  # the same run, other settings
                result["rows"] = [r for r in result["rows"] if any(r.get(k) != v for k, v in stale.items())]
                row = {**key, "val_best": max(dice), "val_last": dice[-1], "val_per_epoch": dice}
                result["rows"].append({**row, "train_seconds": seconds, "machine": describe_machine()["summary"]})
                print(f"{dataset} | {name} | seed {seed}: best {max(dice):.4f}, last {dice[-1]:.4f}", flush=True)
                write_results(folder, name_of_results, result, ablations_markdown(result))
    return result


def results_name(base: Mapping[str, Any]) -> str:
    """The stem of a base's results: ``ablations``, or ``ablations_`` and a digest of a non-empty base, so that
    batches on other bases sit beside each other."""
    if not base:
        return "ablations"
    return "ablations_" + hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:8]


def _previous_result(path: Path, base: dict[str, Any]) -> dict[str, Any]:
    """The ablations.json of earlier batches with the same ``base``, or a fresh result."""
    fresh = {"machine": describe_machine(), "base": base, "settings": {}, "rows": []}
    if not path.is_file():
        return fresh
    try:
        previous = json.loads(path.read_text())
        rows, settings, previous_base = previous["rows"], previous["settings"], previous["base"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserInputError(
            f"{path} is not an ablations result ({error}); move it away or pass another --out."
        ) from None
    if previous_base != base:
        raise UserInputError(f"{path} holds ablations on the base {previous_base}, not {base}; move it away.")
    return {**fresh, "settings": settings, "rows": rows}


def ablations_markdown(result: dict[str, Any]) -> str:
    """Per data set, each ablation's validation Dice (best and last epoch, mean ± sd over seeds) and its change."""
    lines = [
        f"Ablations of the default recipe on {result['machine']['summary']}; "
        f"base overrides {result['base'] or 'none'}.",
        "Validation mean Dice (train.json's evaluator: training size, threshold 0.5) of the best and the last epoch, "
        "mean ± sd over seeds; Δ: the last epoch's change from the base run of the same seed, mean over the ablation's "
        "seeds (seeds without a base run are left out of it). Not the test split.",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["dataset"] == dataset]
        s = result["settings"][dataset]
        base = {r["seed"]: r["val_last"] for r in rows if r["ablation"] == "base"}
        lines += [
            "",
            f"**{dataset}** ({s['image_size'][0]}x{s['image_size'][1]}, {s['num_epochs']} epochs)",
            "",
            "| ablation | best epoch | last epoch | Δ last | n | train s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in dict.fromkeys(r["ablation"] for r in rows):
            ablation_rows = [r for r in rows if r["ablation"] == name]
            last = [r["val_last"] for r in ablation_rows]
            paired = [r["val_last"] - base[r["seed"]] for r in ablation_rows if r["seed"] in base]
            change = f"{statistics.mean(paired):+.4f}" if paired else "-"
            seconds = statistics.mean(r["train_seconds"] for r in ablation_rows)
            best = mean_sd([r["val_best"] for r in ablation_rows])
            lines.append(f"| {name} | {best} | {mean_sd(last)} | {change} | {len(ablation_rows)} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def _settings(datasets: Sequence[str]) -> dict[str, Any]:
    return {name: {k: DATASETS[name][k] for k in ("image_size", "num_epochs")} for name in datasets}
