"""``nerveseg bench league``: the bundle's recipe against the models users would train instead, on real data.

Every system trains on the same prepared split of each data set, at the same image size, for the same epochs,
with the same seeds, on this machine, and is scored by the bundle's challenge mean Dice (an empty prediction on an
empty mask scores 1) on the test split at each image's original size:

1. ``default``: train.json as shipped, evaluated by evaluate.json on the default path (best validation epoch);
2. ``default + ASME``: the same checkpoint with configs/asme.json, and how well its consistency flags bad images
   (Spearman with Dice; AUROC for finding the images with Dice < 0.3);
3. ``EMS``: + configs/training/ems.json; 4. ``SWA``: + configs/training/swa.json (the SWA weights);
5. ``smp Unet-b1`` and 6. ``MONAI FlexibleUNet-b0``: the peers of :mod:`.league_peers`;
7. ``nnU-Net v2 2d``: nnU-Net's own planning, preprocessing, augmentation and trainer (:mod:`.league_nnunet`),
   shortened to the epochs of system 1 with as many batches per epoch as system 1 (``nnUNetTrainer``'s
   ``num_epochs`` and ``num_iterations_per_epoch``, so its learning-rate schedule spans the run): the same number
   of network updates; its batch size is its own plan's.

The data, split once by ``nerveseg prepare`` (a fifth of the images held out as test with seed 0, then fold 0 of 5
as validation; neither data set names subjects, so by image): USGRA-seg's nerve (class 1) and DSB2018's nuclei.
The bundle's systems select their epoch on the validation split; the peers and nnU-Net have no use for it and
train on training + validation, the same pool, for as many updates as the default recipe makes (its epochs times
its batches per epoch): the peers at its batch size, so they see as many images; nnU-Net at its own plan's batch
size, so more images where that is larger, and it predicts with its default test-time mirroring (four views, as
ASME): both favour nnU-Net, so a win of the default over it is not flattered.
The probabilities of systems 5-7, predicted at the league's size, are resized bilinearly to the original size and
thresholded at 0.5, as evaluate.json does. Not tuned on the test split: nothing reads it but the scoring.
"""

from __future__ import annotations

import csv
import gc
import json
import math
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from nerveseg.bundle.data.datalist import load_datalist_file
from nerveseg.bundle.data.prepare import prepare
from nerveseg.bundle.metrics import presence_auc
from nerveseg.scripts.bench import run_builder
from nerveseg.scripts.bench.asme_timing import mean_dice_at_label_size, validation_pairs
from nerveseg.scripts.bench.league_peers import PEERS, peer_probabilities
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.quickstart import validation_dice_of_log
from nerveseg.scripts.bench.results import write_results

__all__ = ["ASME", "BUNDLE_SYSTEMS", "DATASETS", "NNUNET", "SYSTEMS", "league", "league_markdown", "verdict"]

DATASETS: dict[str, dict[str, Any]] = {
    "usgra_seg": {"prepare": {"target_class": 1}, "image_size": [96, 96], "num_epochs": 8},
    "dsb2018": {"prepare": {}, "image_size": [96, 96], "num_epochs": 4},
}
"""Data set (a folder of ``--data_root``) to its ``nerveseg prepare`` options (``folders`` layout), size and epochs."""

BUNDLE_SYSTEMS = {"default": [], "EMS": ["configs/training/ems.json"], "SWA": ["configs/training/swa.json"]}
"""The bundle's trained systems: override files stacked on train.json."""

ASME = "default + ASME"
NNUNET = "nnU-Net v2 2d"
SYSTEMS = ("default", ASME, "EMS", "SWA", *PEERS, NNUNET)
"""Every system, in the table's order."""

QUICK_IMAGES = 20
"""Quick mode's images per data set (the first by name), split as the full run splits them."""
QUICK_RECIPE = {"image_size": [64, 64], "num_epochs": 2, "evaluation": {"inference_backend": "torch"}}
"""Quick mode's size and epochs (two: SWA averages two), and torch for evaluation (no OpenVINO conversions)."""


def league(
    data_root: str = "../shared/data",
    out: str = "outputs/bench",
    bundle_root: str = ".",
    seeds: Sequence[int] = (0, 1, 2),
    nnunet_seeds: int = 1,
    datasets: Sequence[str] = tuple(DATASETS),
    quick: bool = False,
) -> dict[str, Any]:
    """Train and score every system on every data set; write ``league.json`` and ``league.md`` into ``out``.

    Args:
        data_root: the folder holding ``usgra_seg/`` and ``dsb2018/`` (../shared/data).
        out: folder of the results; the prepared data and every run go in ``out/league/``.
        bundle_root: the bundle folder holding ``configs/``.
        seeds: one run of each system per seed.
        nnunet_seeds: how many of ``seeds`` nnU-Net runs (its runs are the longest).
        datasets: names of :data:`DATASETS`.
        quick: a smoke run for CI: a handful of images, :data:`QUICK_RECIPE`, seed 0 only; do not quote it.
    """
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)  # fire gives one name as a string
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown:
        raise SystemExit(f"Unknown datasets {unknown}; choose from {list(DATASETS)}.")
    for name in datasets:
        if not (Path(data_root) / name / "images").is_dir():
            raise SystemExit(f"{Path(data_root) / name / 'images'} not found; pass --data_root, the folder of {name}.")
    _check_benchmark_extra()
    folder = Path(out).resolve()
    root = folder / "league"
    seeds = [0] if quick else seeds
    batch_size = run_builder.read_config(
        run_builder.config_files(bundle_root, "configs/train.json")
    ).get_parsed_content("batch_size")
    rows: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for name in datasets:
        recipe = {**DATASETS[name], **(QUICK_RECIPE if quick else {})}
        datalist = _prepare(Path(data_root) / name, root / "data" / name, recipe["prepare"], quick)
        settings[name] = {"image_size": recipe["image_size"], "num_epochs": recipe["num_epochs"], **_sizes(datalist)}
        for seed in seeds:
            run = root / name / f"seed{seed}"
            rows += _bundle_systems(bundle_root, datalist, run, recipe, seed)
            nnunet = seeds.index(seed) < nnunet_seeds
            rows += _other_systems(bundle_root, datalist, run, recipe, seed, batch_size, nnunet)
            _write(folder, rows, settings, quick)
    return _write(folder, rows, settings, quick)


def verdict(default: Sequence[float], other: Sequence[float], margin: float = 0.02) -> str:
    """``"win"``, ``"loss"`` or ``"tie"`` of the default against another system's test Dice over seeds.

    A win (loss) needs the mean difference ``>= margin`` and Welch's t test over the seeds at the two-sided 5%
    level (Satterthwaite's degrees of freedom; a side with one run, nnU-Net's, borrows the other side's sd and
    gives no degrees of freedom); anything less is a tie, and so is one run against one run, whose spread is unknown.
    The seeds' spread is the only noise counted: every system is scored on the same test images.
    """
    if len(default) < 2 and len(other) < 2:
        return "tie"
    difference = statistics.mean(default) - statistics.mean(other)
    sides = [(statistics.stdev(v) if len(v) > 1 else None, len(v)) for v in (default, other)]
    known = next(sd for sd, _ in sides if sd is not None)
    terms = [(known if sd is None else sd) ** 2 / n for sd, n in sides]
    if sum(terms) == 0:
        return "tie" if abs(difference) < margin else ("win" if difference > 0 else "loss")
    freedom = sum(terms) ** 2 / sum(t**2 / (n - 1) for t, (sd, n) in zip(terms, sides, strict=True) if sd is not None)
    critical = float(stats.t.ppf(0.975, freedom))
    if abs(difference) < margin or abs(difference) <= critical * math.sqrt(sum(terms)):
        return "tie"
    return "win" if difference > 0 else "loss"


def league_markdown(result: dict[str, Any]) -> str:
    """The league tables: per data set, each system's test Dice (mean ± sd over seeds), time and verdict."""
    lines = [
        f"League on {result['machine']['summary']}{' (QUICK smoke run: not a result)' if result['quick'] else ''}.",
        "Test mean Dice (empty-empty = 1) at the original size; mean ± sd over seeds (n runs); training seconds "
        "per run; the default's verdict against each system (win/loss: >= 0.02 and Welch's t over seeds at 5%).",
        "",
        "Protocol: each data set split once by `nerveseg prepare` (test: a fifth of the images, seed 0; validation: "
        "fold 0 of 5 of the rest); neither data set names subjects, so the split is by image. The bundle's systems "
        "train on training and keep their best validation epoch; the peers and nnU-Net train on training + "
        "validation for as many updates as the default (the peers at its batch size, nnU-Net at its own plan's) "
        "and keep their last weights; nnU-Net predicts with its default mirroring (4 views, as ASME); its batch size "
        "is in league.json. Training seconds: the bundle's include data caching, a validation per epoch "
        "and checkpoints; the peers' only their steps; nnU-Net's its planning and preprocessing.",
    ]
    for dataset, systems in result["summary"].items():
        s = result["settings"][dataset]
        lines += [
            "",
            f"**{dataset}** ({s['training']} training, {s['validation']} validation, {s['test']} test images; "
            f"{s['image_size'][0]}x{s['image_size'][1]}, {s['num_epochs']} epochs)",
            "",
            "| system | test Dice | n | train s | default's verdict |",
            "|---|---:|---:|---:|---|",
        ]
        for system in (name for name in SYSTEMS if name in systems):
            v = systems[system]
            seconds = "-" if v["train_seconds"] is None else f"{v['train_seconds']:.0f}"
            spread = "n/a" if v["sd"] is None else f"{v['sd']:.4f}"
            lines.append(f"| {system} | {v['mean']:.4f} ± {spread} | {v['n']} | {seconds} | {v.get('verdict', '')} |")
        asme = [r for r in result["rows"] if r["dataset"] == dataset and r["system"] == ASME]
        if asme:
            spearman = [r["consistency_spearman"] for r in asme if r["consistency_spearman"] is not None]
            auroc = [
                r["consistency_auroc_dice_below_0_3"] for r in asme if r["consistency_auroc_dice_below_0_3"] is not None
            ]
            lines += [
                "",
                f"ASME consistency as a quality flag: Spearman with Dice {_mean(spearman)}, AUROC for Dice < 0.3 "
                f"{_mean(auroc)} (mean over seeds).",
            ]
        default = [r for r in result["rows"] if r["dataset"] == dataset and r["system"] == "default"]
        if default:
            gaps = ", ".join(f"{r['val_best'] - r['val_last']:.3f}" for r in default)
            lines.append(f"Default recipe, validation Dice best epoch - last epoch per seed: {gaps}.")
    return "\n".join(lines) + "\n"


def _check_benchmark_extra() -> None:
    missing = [m for m in ("segmentation_models_pytorch", "nnunetv2") if not _importable(m)]
    if missing:
        raise SystemExit(f"The league's peers need {', '.join(missing)}: pip install -e '.[benchmark]'")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _prepare(source: Path, folder: Path, options: dict[str, Any], quick: bool) -> Path:
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


def _sizes(datalist: Path) -> dict[str, int]:
    items = load_datalist_file(datalist)
    return {split: len(items.get(split, [])) for split in ("training", "validation", "test")}


def _bundle_systems(
    bundle_root: str, datalist: Path, run: Path, recipe: dict[str, Any], seed: int
) -> list[dict[str, Any]]:
    """Systems 1-4: train each of :data:`BUNDLE_SYSTEMS`, evaluate it (and the default with ASME) on the test split."""
    common = {"datalist_file": str(datalist), "image_size": recipe["image_size"]}
    evaluation = ["configs/train.json", "configs/evaluate.json"]
    test_settings = recipe.get("evaluation", {})
    rows = []
    for system, overrides in BUNDLE_SYSTEMS.items():
        folder = run / system.lower()
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        run_builder.train(
            bundle_root,
            ["configs/train.json", *overrides],
            folder,
            seed=seed,
            num_epochs=recipe["num_epochs"],
            **common,
        )
        seconds = time.perf_counter() - start
        gc.collect()
        log = folder / "outputs" / "train.log"
        validation = validation_dice_of_log(log.read_text())
        if not validation:
            raise SystemExit(f"{log} holds no validation Dice; the league reads the best and last epoch from it.")
        checkpoint = folder / "models" / ("model_swa.pt" if system == "SWA" else "model.pt")
        test = {"eval_split": "test", "ckpt_dir": str(folder / "models"), "checkpoint_path": str(checkpoint)}
        test.update(test_settings)
        summary = run_builder.evaluate(bundle_root, [*evaluation, *overrides], folder / "test", **common, **test)
        base = {"val_best": max(validation), "val_last": validation[-1], "train_seconds": seconds}
        rows.append(_row(run, system, seed, summary["mean_dice"], **base))
        if system == "default":
            asme = run_builder.evaluate(
                bundle_root, [*evaluation, "configs/asme.json"], folder / "test_asme", **common, **test
            )
            spearman = asme.get("consistency_dice_spearman", {}).get("rho")  # evaluate.json's summary computes it
            flag = {"consistency_spearman": None if spearman is None or math.isnan(spearman) else spearman}
            flag["consistency_auroc_dice_below_0_3"] = _consistency_auroc(folder / "test_asme" / "eval_test")
            rows.append(_row(run, ASME, seed, asme["mean_dice"], train_seconds=None, **flag))
    return rows


def _consistency_auroc(eval_dir: Path) -> float | None:
    """AUROC of low ASME consistency for finding the test images with Dice < 0.3 (``metrics.csv``'s rows)."""
    with open(eval_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or "asme_consistency" not in rows[0]:
        raise SystemExit(f"{eval_dir / 'metrics.csv'} has no asme_consistency column.")
    return presence_auc([-float(r["asme_consistency"]) for r in rows], [float(r["dice"]) < 0.3 for r in rows])


def _other_systems(
    bundle_root: str, datalist: Path, run: Path, recipe: dict[str, Any], seed: int, batch_size: int, nnunet: bool
) -> list[dict[str, Any]]:
    """Systems 5-7 on training + validation, scored on the test split like evaluate.json scores."""
    size = recipe["image_size"]
    pool = [
        pair for split in ("training", "validation") for pair in validation_pairs(bundle_root, datalist, size, split)
    ]
    train_images = torch.stack([image for image, _ in pool]).float()
    train_masks = (
        torch.stack([F.interpolate(label[None].float(), size=size, mode="nearest")[0] for _, label in pool])
        .gt(0)
        .float()
    )
    test = validation_pairs(bundle_root, datalist, size, "test")
    test_images = torch.stack([image for image, _ in test]).float()
    labels = [np.asarray(label[0]) > 0 for _, label in test]
    updates = recipe["num_epochs"] * math.ceil(_sizes(datalist)["training"] / batch_size)
    rows = []
    for peer in PEERS:
        probabilities, info = peer_probabilities(
            peer, train_images, train_masks, test_images, recipe["num_epochs"], batch_size, seed, updates
        )
        rows.append(_row(run, peer, seed, mean_dice_at_label_size(probabilities[:, 0], labels), **info))
        gc.collect()
    if nnunet:
        from nerveseg.scripts.bench.league_nnunet import nnunet_probabilities

        work = run / "nnunet"
        shutil.rmtree(work, ignore_errors=True)
        probabilities, seconds = nnunet_probabilities(
            [np.asarray(i[0]) for i in train_images], [np.asarray(m[0]) for m in train_masks],
            [np.asarray(i[0]) for i in test_images], work, num_epochs=recipe["num_epochs"],
            iterations_per_epoch=updates // recipe["num_epochs"], seed=seed, threads=torch.get_num_threads(),
        )  # fmt: skip
        plan = json.loads((work / "result.json").read_text())
        dice = mean_dice_at_label_size([torch.as_tensor(p) for p in probabilities], labels)
        plan_used = {"batch_size": plan["batch_size"], "patch_size": plan["patch_size"]}
        rows.append(_row(run, NNUNET, seed, dice, train_seconds=seconds, steps=updates, **plan_used))
    return rows


def _row(run: Path, system: str, seed: int, test_dice: float, **extra: Any) -> dict[str, Any]:
    row = {"dataset": run.parent.name, "system": system, "seed": seed, "test_dice": test_dice, **extra}
    print(json.dumps(row), flush=True)
    return row


def _mean(values: Sequence[float]) -> str:
    return f"{statistics.mean(values):.3f}" if values else "-"


def _write(folder: Path, rows: list[dict[str, Any]], settings: dict[str, Any], quick: bool) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        systems = summary.setdefault(dataset, {})
        for system in SYSTEMS:
            runs = [r for r in rows if r["dataset"] == dataset and r["system"] == system]
            if not runs:
                continue
            dice = [r["test_dice"] for r in runs]
            seconds = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
            systems[system] = {
                "mean": statistics.mean(dice),
                "sd": statistics.stdev(dice) if len(dice) > 1 else None,
                "n": len(dice),
                "train_seconds": statistics.mean(seconds) if seconds else None,
            }
        default = [r["test_dice"] for r in rows if r["dataset"] == dataset and r["system"] == "default"]
        for system, values in systems.items():
            if system != "default" and default:
                others = [r["test_dice"] for r in rows if r["dataset"] == dataset and r["system"] == system]
                values["verdict"] = verdict(default, others)
    result = {"machine": describe_machine(), "quick": quick, "settings": settings, "rows": rows, "summary": summary}
    write_results(folder, "league", result, league_markdown(result))
    return result
