"""``nerveseg benchmark-active-learning``: simulated annotation rounds, ASME-consistency selection against random.

Each round trains a small model from scratch on the labelled images with the bundle's own load, resize and
augmentation transforms and loss (train.json), measures mean Dice on a fixed held-out split, and then lets each
strategy pick the next images to "annotate" from the unlabelled pool (whose labels exist but are hidden).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.transforms import Compose
from monai.utils import set_determinism

from nerveseg.bundle import plots
from nerveseg.bundle.active_learning import asme_consistency, least_consistent
from nerveseg.bundle.data import prepare as preparation
from nerveseg.bundle.data.datalist import load_datalist_file
from nerveseg.bundle.files import write_text_atomically
from nerveseg.bundle.metrics import image_scores
from nerveseg.scripts.benchmarks import _machine

STRATEGIES = ("asme", "random")
"""``asme``: the least ASME-consistent unlabelled images first; ``random``: uniformly at random."""

LABELS = {"asme": "ASME consistency (least consistent first)", "random": "random"}


def _parser(bundle_root: Path, image_size: Sequence[int], features: Sequence[int]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(bundle_root / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle_root)
    parser["image_size"] = list(image_size)
    parser["network_def"] = {
        "_target_": "BasicUNet",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "features": list(features),
    }
    return parser


def _train(
    parser: ConfigParser,
    items: list[dict],
    augmentation: Compose,
    num_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> torch.nn.Module:
    """A network of ``parser`` trained from scratch on ``items`` for ``num_epochs`` (AdamW, cosine schedule)."""
    set_determinism(seed=seed)
    augmentation.set_random_state(seed=seed)
    network = parser.get_parsed_content("network_def", instantiate=True, lazy=False)
    loss_function = parser.get_parsed_content("loss", lazy=False)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        Dataset(items, augmentation), batch_size=batch_size, shuffle=True, num_workers=0, generator=generator
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_epochs * len(loader))
    network.train()
    for _ in range(num_epochs):
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_function(network(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            scheduler.step()
    set_determinism(seed=None)
    return network.eval()


def _stack(items: list[dict], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(item[key]) for item in items])


def _summary_lines(rows: list[dict], strategies: Sequence[str]) -> list[str]:
    sizes = sorted({r["labelled"] for r in rows})
    header = "| labelled | " + " | ".join(f"{LABELS[s]}, mean ± sd" for s in strategies)
    lines = [header + " | difference (ASME - random), mean ± sd |" if "random" in strategies else header + " |"]
    lines.append("|---:|" + "---:|" * (len(strategies) + ("random" in strategies and "asme" in strategies)))
    for size in sizes:
        cells, by_seed = [], {}
        for strategy in strategies:
            matching = [r for r in rows if (r["labelled"], r["strategy"]) == (size, strategy)]
            by_seed[strategy] = {r["seed"]: r["dice"] for r in matching}
            cells.append(_mean_sd(list(by_seed[strategy].values())))
        if "random" in strategies and "asme" in strategies:
            seeds = sorted(set(by_seed["asme"]) & set(by_seed["random"]))
            cells.append(_mean_sd([by_seed["asme"][s] - by_seed["random"][s] for s in seeds], signed=True))
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return lines


def _mean_sd(values: list[float], signed: bool = False) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:+.4f} ± {sd:.4f}" if signed else f"{mean:.4f} ± {sd:.4f}"


def simulate(
    src: str = "../shared/data/usgra_seg",
    out: str = "outputs/benchmarks/active_learning",
    bundle_root: str = ".",
    image_size: tuple[int, int] = (96, 96),
    initial: int = 20,
    step: int = 20,
    max_labelled: int = 100,
    num_epochs: int = 25,
    batch_size: int = 4,
    learning_rate: float = 0.002,
    features: tuple[int, ...] = (16, 16, 32, 64, 128, 16),
    seeds: tuple[int, ...] = (0, 1, 2),
    strategies: tuple[str, ...] = STRATEGIES,
    figure: str | None = "docs/figures/active_learning_usgra.png",
    processes: int = 3,
    threads: int = 1,
) -> None:
    """Mean held-out Dice against the number of labelled images, per selection strategy and seed.

    The USGRA-seg nerve images (class 1) are prepared once (``nerveseg prepare folders``): its validation fold is
    the fixed held-out split, its training folds the pool. For each seed, the same ``initial`` random images start
    every strategy; each round trains a fresh network (a small BasicUNet, ``features``) for ``num_epochs`` with
    train.json's transforms and loss at ``image_size``, records the held-out mean Dice (single view, threshold
    0.5, at ``image_size``), and adds ``step`` images chosen by the strategy, up to ``max_labelled``. ``asme``
    scores every unlabelled image with the round's network (four flipped views,
    :func:`nerveseg.bundle.active_learning.asme_consistency`) and takes the least consistent.

    Args:
        src: the USGRA-seg folder (``images/``, ``masks/``).
        out: folder of the prepared data, ``active_learning.json``, ``.md`` and ``.png``.
        bundle_root: the bundle folder holding ``configs/``.
        image_size: training and evaluation size.
        initial: labelled images of the first round.
        step: images added per round.
        max_labelled: the last round's labelled count.
        num_epochs: epochs of every training run.
        batch_size: training batch size.
        learning_rate: AdamW learning rate (cosine schedule to 0).
        features: BasicUNet feature sizes.
        seeds: one simulation per seed and strategy.
        strategies: names from :data:`STRATEGIES`.
        figure: where to copy the plot as well (``None``: only under ``out``).
        processes: seeds simulated in parallel worker processes.
        threads: torch threads per process (1 keeps several processes from stalling each other).
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"Unknown strategies {unknown}; choose from {list(STRATEGIES)}.")
    if initial < 1 or step < 1 or max_labelled < initial:
        raise SystemExit(f"Need initial >= 1, step >= 1 and max_labelled >= initial; got {initial}, {step}, "
                         f"{max_labelled}.")  # fmt: skip
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    datalist_file = folder / "data" / "datalist.json"
    if not datalist_file.is_file():
        if not Path(src).is_dir():
            raise SystemExit(f"USGRA-seg not found at {src}; pass --src, the folder holding images/ and masks/.")
        preparation.prepare("folders", src, datalist_file, target_class=1)
    datalist = load_datalist_file(datalist_file)
    if max_labelled > len(datalist["training"]):
        raise SystemExit(f"max_labelled {max_labelled} exceeds the {len(datalist['training'])} pool images; lower it.")

    settings_of_run = {
        "bundle_root": str(root), "datalist_file": str(datalist_file), "image_size": list(image_size),
        "features": list(features), "initial": initial, "step": step, "max_labelled": max_labelled,
        "num_epochs": num_epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "strategies": list(strategies), "threads": threads,
    }  # fmt: skip
    start = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=max(1, processes), mp_context=multiprocessing.get_context("spawn")) as pool:
        for seed_rows in pool.map(_simulate_seed, [settings_of_run] * len(seeds), seeds):
            rows.extend(seed_rows)
            write_text_atomically(folder / "active_learning.partial.json", json.dumps(rows, indent=2))
    machine = f"{_machine().rsplit(',', 2)[0]}, {processes} processes of {threads} thread(s), torch {torch.__version__}"
    pool_size = len(datalist["training"])
    held_out_size = len(datalist["validation"])

    settings = (
        f"USGRA-seg nerve (class 1): {pool_size} pool images, {held_out_size} held out (prepare's validation fold); "
        f"BasicUNet {list(features)} trained from scratch for {num_epochs} epochs per round at {list(image_size)} "
        f"(batch {batch_size}, AdamW lr {learning_rate}, cosine, train.json's transforms and DiceFocal loss); "
        f"start {initial} random images, +{step} per round; seeds {list(seeds)}; held-out mean Dice of one view "
        f"at threshold 0.5 at {list(image_size)}; {machine}; total {time.perf_counter() - start:.0f} s."
    )
    lines = [settings, "", *_summary_lines(rows, strategies)]
    result = {"settings": settings, "rows": rows}
    write_text_atomically(folder / "active_learning.json", json.dumps(result, indent=2))
    write_text_atomically(folder / "active_learning.md", "\n".join(lines) + "\n")
    png = plots.learning_curves(
        _curves(rows, strategies),
        folder / "active_learning.png",
        xlabel="labelled images",
        ylabel="held-out mean Dice",
        title="USGRA-seg nerve: active learning simulation",
    )
    if figure:
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(figure).with_name(f".{Path(figure).name}.partial"))
        Path(figure).with_name(f".{Path(figure).name}.partial").replace(figure)
    (folder / "active_learning.partial.json").unlink(missing_ok=True)
    print("\n".join(lines))
    print(f"Saved {folder / 'active_learning.md'}, .json and {png}" + (f" (copied to {figure})" if figure else ""))


def _simulate_seed(run: dict, seed: int) -> list[dict]:
    """The rows of one seed: every strategy's rounds, from the same first images (run in a worker process)."""
    torch.set_num_threads(run["threads"])
    parser = _parser(Path(run["bundle_root"]), run["image_size"], run["features"])
    datalist = load_datalist_file(run["datalist_file"])
    load = Compose(parser.get_parsed_content("load_transforms") + parser.get_parsed_content("resize_transforms"))
    augmentation = Compose(parser.get_parsed_content("train#augmentation"))
    pool = {Path(item["image"]).stem: load(dict(item)) for item in datalist["training"]}
    held_out = [load(dict(item)) for item in datalist["validation"]]
    held_images, held_labels = _stack(held_out, "image"), _stack(held_out, "label") > 0.5
    step, max_labelled = run["step"], run["max_labelled"]

    def evaluate(network: torch.nn.Module) -> float:
        with torch.no_grad():
            pred = torch.cat([torch.sigmoid(network(x)) > 0.5 for x in torch.split(held_images, 16)])
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
                network = _train(
                    parser, [pool[i] for i in key], augmentation, run["num_epochs"], run["batch_size"],
                    run["learning_rate"], seed,
                )  # fmt: skip
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
                images = _stack([pool[i] for i in unlabelled], "image")
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
