"""``nerveseg bench league``: the bundle's recipe against the models users would train instead, on real data.

One protocol for every system. Each data set is split once by ``nerveseg prepare`` (a fifth of the images held out
as test with seed 0, then fold 0 of 5 as validation; neither data set names subjects, so by image). Every system:

- trains on the same pool, training + validation, from random weights, with the same seeds (3 by default), at
  the same input size, and keeps its last epoch. None selects an epoch: nnU-Net and the peers are used that way
  (nnU-Net's final checkpoint, the peers' examples), a maximum over epochs on 33 validation images is biased
  upwards, and a recipe worth shipping must not need it (the recipe issue asks its last epoch to be within 0.03 of
  its best, on validation, where :mod:`.league_ablations` measures it). The league never scores validation;
- sees as many training images: the league's epochs times the pool. The default and the peers take train.json's
  batch size; nnU-Net takes its own plan's and as many batches per epoch as hold the pool;
- is scored on the test split at each image's original size by the challenge Dice (an empty prediction on an
  empty mask scores 1), once from one view and once from four flipped views of the same weights.

The systems:

1. ``default``: train.json as shipped; one view by evaluate.json on the default path, four views by
   configs/asme.json (ASME, with its early stop), whose consistency is also scored as a quality flag (Spearman
   with Dice; AUROC for finding the images with Dice < 0.3);
2. ``smp Unet-b1`` and 3. ``MONAI FlexibleUNet-b0``: the peers of :mod:`.league_peers` (four views: the plain mean
   of the flipped views);
4. ``nnU-Net v2 2d``: nnU-Net's own planning, preprocessing, augmentation and trainer (:mod:`.league_nnunet`),
   shortened in epochs and batches only; four views are its default test-time mirroring.

The peers' and nnU-Net's probabilities, predicted at the league's size, are resized bilinearly to the original
size and thresholded at 0.5, as evaluate.json does. Every run keeps each test image's Dice, and the default's
difference to each system (one view against one view, four against four) gets a 95% interval from a paired
bootstrap over seeds and test images (:func:`~.scoring.paired_bootstrap`): a win needs a mean difference of at
least 0.02 with the interval above 0. Nothing is tuned on the test split.

The league runs in pieces: ``league.json`` gains each run's rows as it ends (atomically), and the same command run
again skips the runs already there with the same settings, so a stopped league goes on where it stopped;
``--datasets`` and ``--seeds`` run one piece. Run pieces one after another, not side by side: each reads the
file when it starts and writes it whole, and two trainings on one small CPU slow each other many times over. A
run is reused only while the settings (size, epochs, batch, pool and test images) and its system's digest (the
inputs as read; the default's config files, or the module that trains a peer or nnU-Net, and nnU-Net's version)
are unchanged.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nerveseg.bundle import runs
from nerveseg.bundle.data.datalist import load_datalist_file
from nerveseg.bundle.data.prepare import prepare
from nerveseg.bundle.metrics import presence_auc
from nerveseg.scripts.bench.league_peers import PEERS, peer_probabilities
from nerveseg.scripts.bench.league_table import DEFAULT, NNUNET, SYSTEMS, VIEWS, league_markdown, league_summary
from nerveseg.scripts.bench.machine import describe_machine, require_benchmark_extra
from nerveseg.scripts.bench.results import write_results
from nerveseg.scripts.bench.scoring import dice_at_label_size, split_pairs
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import save_state_dict

__all__ = ["DATASETS", "QUICK_RECIPE", "RECIPE_FILES", "config_digest", "league", "prepare_split"]

DATASETS: dict[str, dict[str, Any]] = {
    "usgra_seg": {"prepare": {"target_class": 1}, "image_size": [96, 96], "num_epochs": 8},
    "dsb2018": {"prepare": {}, "image_size": [96, 96], "num_epochs": 4},
}
"""Data set (a folder of ``--data_root``) to its ``nerveseg prepare`` options (``folders`` layout), size and epochs."""

RECIPE_FILES = ("configs/train.json", "configs/evaluate.json", "configs/asme.json")
"""The config files the default system trains and is scored with."""

QUICK_IMAGES = 20
"""Quick mode's images per data set (the first by name), split as the full run splits them."""
QUICK_RECIPE = {"image_size": [64, 64], "num_epochs": 2, "evaluation": {"inference_backend": "torch"}}
"""Quick mode's size and epochs, and torch for evaluation (no OpenVINO conversions)."""


def league(
    data_root: str = "../shared/data",
    out: str = "outputs/bench",
    bundle_root: str = ".",
    seeds: Sequence[int] = (0, 1, 2),
    datasets: Sequence[str] = tuple(DATASETS),
    quick: bool = False,
    nnunet_timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Train and score every system on ``datasets`` x ``seeds``; add each run's rows to ``out/league.json`` (and its
    table to ``out/league.md``) as the run ends, skipping runs already there with the same settings.

    Args:
        data_root: the folder holding ``usgra_seg/`` and ``dsb2018/`` (../shared/data).
        out: folder of the results; the prepared data and every run go in ``out/league/``.
        bundle_root: the bundle folder holding ``configs/``.
        seeds: one run of each system per seed.
        datasets: names of :data:`DATASETS`.
        quick: a smoke run for CI: a handful of images, :data:`QUICK_RECIPE`, seed 0 only, written to
            ``league_quick.json`` and ``league_quick.md`` beside a full league's; do not quote it.
        nnunet_timeout_s: nnU-Net's subprocess is stopped after this long, with an error naming its step.
    """
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)  # fire gives one name as a string
    seeds = [0] if quick else ([seeds] if isinstance(seeds, int) else list(seeds))
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown:
        raise UserInputError(f"Unknown datasets {unknown}; choose from {list(DATASETS)}.")
    for name in datasets:
        if not (Path(data_root) / name / "images").is_dir():
            raise UserInputError(
                f"{Path(data_root) / name / 'images'} not found; pass --data_root, the folder of {name}."
            )
    require_benchmark_extra("The league", "segmentation_models_pytorch", "nnunetv2")
    folder = Path(out).resolve()
    root = folder / _results_name(quick)  # the prepared data and the runs; quick runs apart from a full league's
    batch_size = runs.read_config(runs.config_files(bundle_root, "configs/train.json")).get_parsed_content("batch_size")
    results_file = folder / f"{_results_name(quick)}.json"
    result = _previous_result(results_file, quick)
    for name in datasets:
        recipe = {**DATASETS[name], **(QUICK_RECIPE if quick else {})}
        datalist = prepare_split(Path(data_root) / name, root / "data" / name, recipe["prepare"], quick)
        settings = _settings(datalist, recipe, batch_size)
        if result["settings"].get(name, settings) != settings:
            print(f"{name}: the settings changed since {results_file}; its runs there are run again.")
            result["rows"] = [r for r in result["rows"] if r["dataset"] != name]
        result["settings"][name] = settings
        data = _league_data(bundle_root, datalist, recipe["image_size"])
        digests = {system: _system_digest(system, bundle_root, data["digest"]) for system in SYSTEMS}
        stale = [r for r in result["rows"] if r["dataset"] == name and r.get("digest") != digests[r["system"]]]
        if stale:
            print(f"{name}: the code, configs or inputs of {sorted({r['system'] for r in stale})} changed; run again.")
            result["rows"] = [r for r in result["rows"] if r not in stale]
        for seed in seeds:
            for system in SYSTEMS:
                key = (name, system, seed)
                seed_rows = [r for r in result["rows"] if (r["dataset"], r["system"], r["seed"]) == key]
                if {r["views"] for r in seed_rows} == set(VIEWS):
                    print(f"{name} | {system} | seed {seed}: in {results_file} already, skipped.")
                    continue
                run = root / name / f"seed{seed}" / system.replace(" ", "_")
                shutil.rmtree(run, ignore_errors=True)
                start = time.perf_counter()
                rows = _run_system(system, bundle_root, datalist, data, run, recipe, seed, batch_size, nnunet_timeout_s)
                where = {"dataset": name, "system": system, "seed": seed, "machine": describe_machine()["summary"]}
                where.update(digest=digests[system], run_seconds=time.perf_counter() - start)
                for row in rows:
                    result["rows"].append({**where, **row})
                    print(f"{name} | {system} | seed {seed} | {row['views']} views: {row['test_dice']:.4f}", flush=True)
                _write(folder, result)
                gc.collect()
    return _write(folder, result)


def prepare_split(source: Path, folder: Path, options: dict[str, Any], quick: bool = False) -> Path:
    """The data set split once by ``nerveseg prepare`` (a few images of it in quick mode)."""
    if quick:  # the first images only, linked into a small copy of the layout
        subset = folder.parent / f"{folder.name}_source"
        shutil.rmtree(subset, ignore_errors=True)
        for kind in ("images", "masks"):
            (subset / kind).mkdir(parents=True)
        for image in sorted((source / "images").iterdir())[:QUICK_IMAGES]:
            for kind in ("images", "masks"):
                (subset / kind / image.name).symlink_to((source / kind / image.name).resolve())
        source = subset
    datalist = folder / "datalist.json"
    prepare("folders", src=source, out=datalist, test_fraction=0.2, seed=0, **options)
    return datalist


def _previous_result(path: Path, quick: bool) -> dict[str, Any]:
    """The results of earlier pieces, or a fresh result where there are none."""
    fresh = {"machine": describe_machine(), "quick": quick, "settings": {}, "rows": []}
    if not path.is_file():
        return fresh
    try:
        previous = json.loads(path.read_text())
        rows, settings = previous["rows"], previous["settings"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserInputError(
            f"{path} is not a league's result ({error}); move it away or pass another --out to start afresh."
        ) from None
    if any("image_dice" not in row for row in rows):
        print(f"{path} was written before per-image Dice was kept; this run starts afresh over it.")
        return fresh
    return {**fresh, "settings": settings, "rows": rows}


def _settings(datalist: Path, recipe: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """What a data set's runs depend on: a run is reused only where these are unchanged."""
    items = load_datalist_file(datalist)
    return {
        "image_size": list(recipe["image_size"]),
        "num_epochs": recipe["num_epochs"],
        "batch_size": batch_size,
        "pool": len(items["training"]) + len(items["validation"]),
        "test": len(items["test"]),
        "test_images": [Path(item["image"]).stem for item in items["test"]],
    }


def config_digest(bundle_root: str, files: Sequence[str]) -> str:
    """A digest of config files' contents: a run is reused only while the files it read are unchanged."""
    digest = hashlib.sha256()
    for path in runs.config_files(bundle_root, *files):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def _league_data(bundle_root: str, datalist: Path, size: Sequence[int]) -> dict[str, Any]:
    """The pool's images and masks and the test images at the league's size, the test labels at their own, read
    by evaluate.json's preprocessing, and a digest of them all."""
    pool = [pair for split in ("training", "validation") for pair in split_pairs(bundle_root, datalist, size, split)]
    test = split_pairs(bundle_root, datalist, size, "test")
    data = {
        "images": torch.stack([image for image, _ in pool]).float(),
        "masks": torch.stack(
            [F.interpolate(label[None].float(), size=size, mode="nearest")[0] for _, label in pool]
        ).gt(0),
        "test_images": torch.stack([image for image, _ in test]).float(),
        "labels": [np.asarray(label[0]) > 0 for _, label in test],
    }
    digest = hashlib.sha256()
    for array in (data["images"], data["masks"], data["test_images"], *data["labels"]):
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return {**data, "digest": digest.hexdigest()[:16]}


def _system_digest(system: str, bundle_root: str, inputs: str) -> str:
    """What a system's runs depend on beyond the settings: the inputs, and the default's config files or the
    module (and nnU-Net's version) that trains the others. A run is reused only while its digest is unchanged."""
    digest = hashlib.sha256(inputs.encode())
    if system == DEFAULT:
        digest.update(config_digest(bundle_root, RECIPE_FILES).encode())
    else:
        module = "league_peers" if system in PEERS else "league_nnunet"
        digest.update(Path(importlib.util.find_spec(f"nerveseg.scripts.bench.{module}").origin).read_bytes())
    if system == NNUNET:
        digest.update(_version("nnunetv2").encode())
    return digest.hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _run_system(
    system: str,
    bundle_root: str,
    datalist: Path,
    data: dict[str, Any],
    run: Path,
    recipe: dict[str, Any],
    seed: int,
    batch_size: int,
    nnunet_timeout_s: float,
) -> list[dict[str, Any]]:
    """Train ``system`` once and score it on the test split from one and from four views: a row for each."""
    if system == DEFAULT:
        return _default_rows(bundle_root, datalist, run, recipe, seed)
    images, masks, test_images, labels = (data[key] for key in ("images", "masks", "test_images", "labels"))
    if system in PEERS:
        probabilities, info = peer_probabilities(
            system, images, masks.float(), test_images, recipe["num_epochs"], batch_size, seed
        )
        return [_row(count, dice_at_label_size(probabilities[count][:, 0], labels), **info) for count in VIEWS]
    from nerveseg.scripts.bench.league_nnunet import nnunet_probabilities

    probabilities, seconds = nnunet_probabilities(
        [np.asarray(i[0]) for i in images], [np.asarray(m[0], dtype=np.float32) for m in masks],
        [np.asarray(i[0]) for i in test_images], run, num_epochs=recipe["num_epochs"], images_per_epoch=len(images),
        seed=seed, threads=torch.get_num_threads(), timeout_s=nnunet_timeout_s,
    )  # fmt: skip
    plan = json.loads((run / "result.json").read_text())
    info = {key: plan[key] for key in ("batch_size", "patch_size", "plan_and_preprocess_seconds")}
    info["steps"] = recipe["num_epochs"] * plan["iterations_per_epoch"]
    prediction = {1: "single view", 4: "mirrored"}
    return [
        _row(count, dice_at_label_size(probabilities[prediction[count]], labels), train_seconds=seconds, **info)
        for count in VIEWS
    ]


def _default_rows(
    bundle_root: str, datalist: Path, run: Path, recipe: dict[str, Any], seed: int
) -> list[dict[str, Any]]:
    """train.json on the pool, its last epoch scored by evaluate.json (one view) and with configs/asme.json."""
    items = json.loads(datalist.read_text())
    pool_datalist = datalist.with_name("datalist_pool.json")  # training + validation, as the other systems train
    pool = {**items, "training": items["training"] + items["validation"]}
    pool_datalist.write_text(json.dumps(pool, indent=2))
    common = {"datalist_file": str(pool_datalist), "image_size": recipe["image_size"]}
    start = time.perf_counter()
    epochs = recipe["num_epochs"]  # one validation, at the end: validation is in the pool, so it selects nothing
    runs.train(bundle_root, ["configs/train.json"], run, seed=seed, num_epochs=epochs, val_interval=epochs, **common)
    seconds = time.perf_counter() - start
    models = run / "models"
    state = torch.load(models / "last.pt", map_location="cpu", weights_only=False)  # this run's own file
    last = save_state_dict(state["network"], models / "model_last.pt")
    test = {"eval_split": "test", "ckpt_dir": str(models), "checkpoint_path": str(last), **recipe.get("evaluation", {})}
    evaluation = ["configs/train.json", "configs/evaluate.json"]
    rows = []
    for count, extra in ((1, []), (4, ["configs/asme.json"])):
        output = run / f"test_{count}_views"
        summary = runs.evaluate(bundle_root, [*evaluation, *extra], output, **common, **test)
        dice, consistency, views_used = _metrics(output / "eval_test" / "metrics.csv", pool["test"])
        row = _row(count, dice, train_seconds=seconds)
        if count == 4:
            if np.isnan(consistency).any():
                raise UserInputError(
                    f"{output} has no asme_consistency per image; configs/asme.json must set an ASME inferer."
                )
            row["mean_views_used"] = float(np.mean(views_used))  # ASME's early stop computes fewer where views agree
            spearman = summary.get("consistency_dice_spearman", {}).get("rho")  # evaluate.json's summary has it
            row["consistency_spearman"] = None if spearman is None or math.isnan(spearman) else spearman
            low = [value < 0.3 for value in dice]
            row["consistency_auroc_dice_below_0_3"] = presence_auc([-value for value in consistency], low)
        rows.append(row)
    return rows


def _metrics(path: Path, test_items: Sequence[dict[str, Any]]) -> tuple[list[float], list[float], list[float]]:
    """The Dice, and ASME's consistency and views used (NaN without ASME), of each test image in ``metrics.csv``,
    in the test split's order."""
    names = [Path(item["image"]).stem for item in test_items]
    if len(set(names)) != len(names):
        raise UserInputError(f"{path}: the test split names two images alike; give every image a distinct file stem.")
    with open(path, newline="") as file:
        by_image = {row["id"]: row for row in csv.DictReader(file)}
    missing = [name for name in names if name not in by_image]
    if missing:
        raise UserInputError(f"{path} has no row for the test images {missing[:3]}; the evaluation did not finish.")
    rows = [by_image[name] for name in names]
    columns = ("dice", "asme_consistency", "asme_views_used")
    dice, consistency, views_used = ([float(r.get(column) or "nan") for r in rows] for column in columns)
    return dice, consistency, views_used


def _row(views: int, image_dice: Sequence[float], **extra: Any) -> dict[str, Any]:
    return {"views": views, "test_dice": float(np.mean(image_dice)), **extra, "image_dice": list(image_dice)}


def _results_name(quick: bool) -> str:
    return "league_quick" if quick else "league"


def _write(folder: Path, result: dict[str, Any]) -> dict[str, Any]:
    result["machine"] = describe_machine()
    result["summary"] = league_summary(result["rows"])
    write_results(folder, _results_name(result["quick"]), result, league_markdown(result))
    return result
