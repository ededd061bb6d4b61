"""``nerveseg bench active-learning``: simulated annotation rounds, ASME-consistency selection against random.

Each round writes a datalist of the labelled images, trains a small network on it from scratch with train.json's
trainer (its transforms, loss, optimizer and schedule; its BasicUNet or an override file of configs/networks/), measures
mean Dice on a fixed held-out split, and then lets each strategy pick the next images to "annotate" from the
unlabelled pool (whose labels exist but are hidden).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from nerveseg.bundle import plots, runs
from nerveseg.bundle.active_learning import asme_consistency, least_consistent
from nerveseg.bundle.data import prepare as preparation
from nerveseg.bundle.data.datalist import load_datalist_file
from nerveseg.bundle.metrics import image_scores
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import mean_sd, write_results
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path, write_json_atomically

__all__ = ["QUICK", "STRATEGIES", "simulate"]

STRATEGIES = ("asme", "random")
"""``asme``: the least ASME-consistent unlabelled images first; ``random``: uniformly at random."""

LABELS = {"asme": "ASME consistency (least consistent first)", "random": "random"}

QUICK = {
    "image_size": (32, 32),
    "features": (4, 4, 8, 8, 16, 4),
    "initial": 4,
    "step": 4,
    "max_labelled": 8,
    "num_epochs": 1,
    "batch_size": 2,
    "seeds": (0,),
    "processes": 1,
    "figure": None,
}
"""The settings ``quick`` replaces: two rounds of one epoch at 32x32, one seed, no figure copied into docs/."""


def simulate(
    src: str = "../shared/data/usgra_seg",
    out: str = "outputs/bench",
    bundle_root: str = ".",
    network: str | None = None,
    features: Sequence[int] | None = (16, 16, 32, 64, 128, 16),
    image_size: tuple[int, int] = (96, 96),
    initial: int = 20,
    step: int = 20,
    max_labelled: int = 100,
    num_epochs: int = 25,
    batch_size: int = 4,
    learning_rate: float = 0.002,
    seeds: Sequence[int] = (0, 1, 2),
    strategies: Sequence[str] = STRATEGIES,
    figure: str | None = "docs/figures/active_learning_usgra.png",
    processes: int = 3,
    threads: int = 1,
    quick: bool = False,
) -> dict[str, Any]:
    """Mean held-out Dice against the number of labelled images, per selection strategy and seed.

    The USGRA-seg nerve images (class 1) are prepared once (``nerveseg prepare folders``): its validation fold is
    the fixed held-out split, its training folds the pool. For each seed, the same ``initial`` random images start
    every strategy; each round trains a fresh network through train.json's trainer with ``network`` stacked on it,
    records the held-out mean Dice (one view, threshold 0.5, at ``image_size``, per image by
    :func:`nerveseg.bundle.metrics.image_scores`), and adds ``step`` images chosen by the strategy, up to
    ``max_labelled``. ``asme`` scores every unlabelled image with the round's network (four flipped views,
    :func:`nerveseg.bundle.active_learning.asme_consistency`) and takes the least consistent.

    Args:
        src: the USGRA-seg folder (``images/``, ``masks/``).
        out: folder of ``active_learning.json``, ``.md`` and ``.png``, and of the prepared data and runs
            (``active_learning/``).
        bundle_root: the bundle folder holding ``configs/``.
        network: a network override file stacked on train.json; None trains train.json's BasicUNet.
        features: the network's ``network_def#features`` (BasicUNet's feature sizes); ``None`` keeps the config's.
        image_size: training and evaluation size.
        initial: labelled images of the first round.
        step: images added per round.
        max_labelled: the last round's labelled count.
        num_epochs: epochs of every training run.
        batch_size: training batch size.
        learning_rate: train.json's learning rate.
        seeds: one simulation per seed and strategy.
        strategies: names from :data:`STRATEGIES`.
        figure: where to copy the plot as well (``None``: only under ``out``).
        processes: seeds simulated in parallel worker processes (several single-thread trainings of a small
            network use the cores better than one); 1 runs them one after the other in this process.
        threads: torch threads per process (1 keeps several processes from stalling each other).
        quick: a smoke run in seconds: :data:`QUICK` replaces those settings. Do not quote its figures.
    """
    run = {
        "network": network, "features": features, "image_size": image_size, "initial": initial, "step": step,
        "max_labelled": max_labelled, "num_epochs": num_epochs, "batch_size": batch_size,
        "learning_rate": learning_rate, "seeds": seeds, "strategies": strategies, "figure": figure,
        "processes": processes, "threads": threads, **(QUICK if quick else {}),
    }  # fmt: skip
    _check_settings(run)
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    work = folder / "active_learning"
    datalist_file = _prepared(src, work / "data" / "datalist.json")
    datalist = load_datalist_file(datalist_file)
    if run["max_labelled"] > len(datalist["training"]):
        raise UserInputError(
            f"max_labelled {run['max_labelled']} exceeds the {len(datalist['training'])} pool images; lower it."
        )
    run.update(bundle_root=str(root), datalist_file=str(datalist_file), work=str(work))
    run.update(configs=runs.config_files(root, "configs/train.json", *([run["network"]] if run["network"] else [])))
    run.update(image_size=list(run["image_size"]), strategies=list(run["strategies"]), seeds=list(run["seeds"]))

    start = time.perf_counter()
    rows: list[dict] = []
    for seed_rows in _seed_rows(run):
        rows.extend(seed_rows)
        write_json_atomically(work / "active_learning.partial.json", rows)
    settings = _settings_text(run, datalist, time.perf_counter() - start, quick)
    table = "\n".join([settings, "", *_summary_lines(rows, run["strategies"])]) + "\n"
    result = {"settings": settings, "rows": rows}
    write_results(folder, "active_learning", result, table)
    _plot(rows, run["strategies"], folder / "active_learning.png", run["figure"])
    (work / "active_learning.partial.json").unlink(missing_ok=True)
    return result


def _prepared(src: str, datalist_file: Path) -> Path:
    """The datalist of USGRA-seg's nerve masks, prepared on first use (``nerveseg prepare folders``'s defaults)."""
    if not datalist_file.is_file():
        if not Path(src).is_dir():
            raise UserInputError(f"USGRA-seg not found at {src}; pass --src, the folder holding images/ and masks/.")
        preparation.prepare("folders", src, datalist_file, target_class=1)
    return datalist_file


def _plot(rows: list[dict], strategies: Sequence[str], path: Path, figure: str | None) -> None:
    """The learning curves into ``path``, and a copy into ``figure`` (docs/figures/) when it is given."""
    png = plots.learning_curves(
        _curves(rows, strategies),
        path,
        xlabel="labelled images",
        ylabel="held-out mean Dice",
        title="USGRA-seg nerve: active learning simulation",
    )
    if figure:
        with atomic_path(figure) as partial:
            shutil.copyfile(png, partial)
    print(f"Plot {png}" + (f" (copied to {figure})" if figure else ""), flush=True)


def _check_settings(run: dict) -> None:
    """Refuse unknown strategies and round sizes that make no round, before any work."""
    unknown = [s for s in run["strategies"] if s not in STRATEGIES]
    if unknown:
        raise UserInputError(f"Unknown strategies {unknown}; choose from {list(STRATEGIES)}.")
    if run["initial"] < 1 or run["step"] < 1 or run["max_labelled"] < run["initial"]:
        raise UserInputError(
            f"Need initial >= 1, step >= 1 and max_labelled >= initial; got {run['initial']}, {run['step']}, "
            f"{run['max_labelled']}."
        )


def _settings_text(run: dict, datalist: dict, seconds: float, quick: bool) -> str:
    """The simulation's data, network, training, rounds and machine, in one paragraph above its table."""
    features = f" with features {list(run['features'])}" if run["features"] is not None else ""
    network = Path(run["network"]).name if run["network"] else "train.json's BasicUNet"
    return (
        f"USGRA-seg nerve (class 1): {len(datalist['training'])} pool images, {len(datalist['validation'])} held out "
        f"(prepare's validation fold); {network}{features} trained from scratch with train.json's "
        f"trainer for {run['num_epochs']} epochs per round at {run['image_size']} (batch {run['batch_size']}, lr "
        f"{run['learning_rate']}); start {run['initial']} random images, +{run['step']} per round; seeds "
        f"{run['seeds']}; held-out mean Dice of one view at threshold 0.5 at {run['image_size']}; "
        f"{describe_machine()['summary']}, {run['processes']} processes of {run['threads']} thread(s); total "
        f"{seconds:.0f} s." + (" Quick mode: do not quote." if quick else "")
    )


def _seed_rows(run: dict) -> Iterator[list[dict]]:
    """Every seed's rows as it finishes, in worker processes when ``processes`` > 1 (spawned: torch is not
    fork-safe); with 1, one seed after the other in this process."""
    if run["processes"] <= 1 or len(run["seeds"]) == 1:
        yield from (_simulate_seed(run, seed) for seed in run["seeds"])
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=run["processes"], mp_context=context) as pool:
        yield from pool.map(_simulate_seed, [run] * len(run["seeds"]), run["seeds"])


def _stack(items: list[dict], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(item[key]) for item in items])


def _train_round(run: dict, seed: int, items: list[dict], held_out: list[dict], tag: str) -> torch.nn.Module:
    """The network train.json's trainer gives for the labelled ``items`` (validation never runs: the held-out
    split is for the simulation's own measurement, not for choosing a checkpoint)."""
    folder = Path(run["work"]) / "runs" / f"seed{seed}" / tag
    datalist = write_json_atomically(folder / "datalist.json", {"training": items, "validation": held_out})
    overrides = {
        "datalist_file": str(datalist),
        "image_size": run["image_size"],
        "num_epochs": run["num_epochs"],
        "val_interval": run["num_epochs"] + 1,
        "batch_size": run["batch_size"],
        "learning_rate": run["learning_rate"],
        "seed": seed,
        **({"network_def#features": list(run["features"])} if run["features"] is not None else {}),
    }
    with tempfile.TemporaryDirectory(dir=folder) as checkpoints:  # the network is scored in memory
        workflow = runs.train(run["bundle_root"], run["configs"], folder, ckpt_dir=checkpoints, **overrides)
    return workflow.parser.get_parsed_content("network").eval()


def _simulate_seed(run: dict, seed: int) -> list[dict]:
    """The rows of one seed: every strategy's rounds, from the same first images."""
    torch.set_num_threads(run["threads"])
    datalist = load_datalist_file(run["datalist_file"])
    config = runs.read_config(run["configs"], {"image_size": run["image_size"]})
    load = config.get_parsed_content("validate#preprocessing")  # train.json's load and resize
    items = {Path(item["image"]).stem: item for item in datalist["training"]}
    pool = {name: load(dict(item)) for name, item in items.items()}
    held_out = [load(dict(item)) for item in datalist["validation"]]
    held_images, held_labels = _stack(held_out, "image"), _stack(held_out, "label") > 0.5
    step, max_labelled = run["step"], run["max_labelled"]

    def evaluate(network: torch.nn.Module) -> float:
        device = next(network.parameters()).device
        with torch.no_grad():
            pred = torch.cat([torch.sigmoid(network(x.to(device))).cpu() > 0.5 for x in torch.split(held_images, 16)])
        scores = [image_scores(p.numpy(), t.numpy())["dice"] for p, t in zip(pred, held_labels, strict=True)]
        return statistics.mean(scores)

    rows: list[dict] = []
    first = sorted(random.Random(seed).sample(sorted(pool), run["initial"]))
    trained: dict[tuple[str, ...], tuple[torch.nn.Module, float, float]] = {}
    for strategy in run["strategies"]:
        labelled = list(first)
        chooser = random.Random(f"{seed}-{strategy}")
        while True:
            key = tuple(sorted(labelled))
            if key not in trained:  # the first round is the same for every strategy: train it once
                tick = time.perf_counter()
                tag = "first" if key == tuple(first) else f"{strategy}{len(labelled)}"
                network = _train_round(run, seed, [items[i] for i in key], datalist["validation"], tag)
                trained[key] = (network, evaluate(network), time.perf_counter() - tick)
            network, dice, seconds = trained[key]
            row = {"seed": seed, "strategy": strategy, "labelled": len(labelled), "dice": dice,
                   "train_seconds": round(seconds, 1)}  # fmt: skip
            if len(labelled) + step > max_labelled:
                rows.append(row)
                print(json.dumps(row), flush=True)
                break
            unlabelled = sorted(set(pool) - set(labelled))
            if strategy == "random":
                chosen = sorted(chooser.sample(unlabelled, step))
            else:
                device = next(network.parameters()).device
                images = _stack([pool[i] for i in unlabelled], "image").to(device)
                values = asme_consistency(network, images, batch_size=16)
                scores = {i: float(v) for i, v in zip(unlabelled, values, strict=True)}
                chosen = least_consistent(scores, count=step, seed=seed)
                row["pool_consistency_mean"] = statistics.mean(scores.values())
                row["chosen_consistency_mean"] = statistics.mean(scores[i] for i in chosen)
            row["added"] = chosen
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "added"}), flush=True)
            labelled += chosen
    return rows


def _summary_lines(rows: list[dict], strategies: Sequence[str]) -> list[str]:
    """Per labelled count: each strategy's mean ± sd over seeds, and ASME minus random paired by seed."""
    sizes = sorted({r["labelled"] for r in rows})
    paired = "random" in strategies and "asme" in strategies
    header = "| labelled | " + " | ".join(f"{LABELS[s]}, mean ± sd" for s in strategies)
    lines = [header + " | difference (ASME - random), mean ± sd |" if paired else header + " |"]
    lines.append("|---:|" + "---:|" * (len(strategies) + paired))
    for size in sizes:
        cells, by_seed = [], {}
        for strategy in strategies:
            matching = [r for r in rows if (r["labelled"], r["strategy"]) == (size, strategy)]
            by_seed[strategy] = {r["seed"]: r["dice"] for r in matching}
            cells.append(mean_sd(list(by_seed[strategy].values())))
        if paired:
            seeds = sorted(set(by_seed["asme"]) & set(by_seed["random"]))
            cells.append(mean_sd([by_seed["asme"][s] - by_seed["random"][s] for s in seeds], signed=True))
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return lines


def _curves(rows: list[dict], strategies: Sequence[str]) -> dict[str, dict[int, list[float]]]:
    """Strategy label to labelled count to the Dice of every seed."""
    curves: dict[str, dict[int, list[float]]] = {}
    for strategy in strategies:
        curve: dict[int, list[float]] = {}
        for r in rows:
            if r["strategy"] == strategy:
                curve.setdefault(r["labelled"], []).append(r["dice"])
        curves[LABELS[strategy]] = curve
    return curves
