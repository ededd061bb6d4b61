"""Benchmark commands: each prints a table and saves it, with the raw numbers, under ``outputs/benchmarks/``."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from nerveseg.bundle import tuning
from nerveseg.bundle.files import write_text_atomically
from nerveseg.networks.profile import count_parameters, cpu_model, forward_flops, forward_latency

FLEXIBLE_UNET_BACKBONES = [f"efficientnet-b{i}" for i in range(8)]


def network_variants(
    configs: Path, backbones: Sequence[str] = FLEXIBLE_UNET_BACKBONES
) -> list[tuple[str, list[Path], dict]]:
    """(name, config stack, overrides) for train.json's network at each of ``backbones``, then each network override
    file and the presence classifier."""
    train = configs / "train.json"
    variants = [
        (
            f"FlexibleUNet {backbone}",
            [train],
            {} if backbone == "efficientnet-b1" else {"network_def#backbone": backbone},
        )
        for backbone in backbones
    ]
    variants += [(f"networks/{p.name}", [train, p], {}) for p in sorted((configs / "networks").glob("*.json"))]
    variants.append(("presence_classifier.json", [train, configs / "presence_classifier.json"], {}))
    return variants


def _machine() -> str:
    """The CPU model, the threads torch uses and the torch version, for the record next to every timing."""
    return f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def networks(
    bundle_root: str = ".",
    image_size: tuple[int, int] = (448, 576),
    repeats: int = 5,
    out: str = "outputs/benchmarks/networks",
) -> None:
    """Parameters, forward GFLOPs and CPU forward latency (batch 1, median of ``repeats``) of every selectable network.

    Each network is built from the bundle's real configs (``network_def`` of train.json at each EfficientNet size,
    then each file of configs/networks/ and the presence classifier), with random weights.

    Args:
        bundle_root: the bundle folder holding ``configs/``.
        image_size: input height and width.
        repeats: timed forward passes per network, after one untimed warm-up.
        out: folder for ``networks.json`` (every run) and ``networks.md`` (the table).
    """
    configs = Path(bundle_root) / "configs"
    if not (configs / "train.json").is_file():
        raise SystemExit(f"{configs / 'train.json'} not found; pass --bundle_root, the folder holding configs/.")
    shape = (1, 1, *image_size)
    machine = _machine()
    print(f"Input {shape}; {machine}")
    print(f"{'network':<42}{'parameters':>14}{'GFLOPs':>9}{'latency s':>11}")
    rows = []
    for name, stack, overrides in network_variants(configs):
        parser = ConfigParser()
        parser.read_config([str(p) for p in stack])
        for key, value in overrides.items():
            parser[key] = value
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def")
        row = {
            "network": name,
            "parameters": count_parameters(network),
            "gflops": forward_flops(network, shape) / 1e9,
            "latency": forward_latency(network, shape, repeats=repeats),
        }
        rows.append(row)
        print(f"{name:<42}{row['parameters']:>14,}{row['gflops']:>9.1f}{row['latency']['median']:>11.3f}")
        del network

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    table = [
        f"Input {list(shape)}, eval mode, batch 1, median of {repeats} runs after a warm-up; {machine}.",
        "",
        "| network | parameters | GFLOPs | CPU latency (s) |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['network']} | {r['parameters'] / 1e6:.1f} M | {r['gflops']:.1f} | {r['latency']['median']:.2f} |"
            for r in rows
        ),
    ]
    for name, text in (("networks.md", "\n".join(table) + "\n"), ("networks.json", json.dumps(rows, indent=2))):
        write_text_atomically(folder / name, text)
    print(f"Saved {folder / 'networks.md'} and {folder / 'networks.json'}")


def train_command(
    root: Path,
    configs: Sequence[str | Path],
    datalist_file: str | Path,
    run: Path,
    image_size: Sequence[int],
    num_epochs: int,
    learning_rate: float,
    seed: int,
) -> list[str]:
    """The ``monai.bundle run training`` command of one benchmark run: its models and outputs go under ``run``."""
    return [
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps([str(c) for c in configs]),
        "--bundle_root", str(root), "--datalist_file", str(Path(datalist_file).resolve()),
        "--ckpt_dir", str(run / "models"), "--output_dir", str(run / "outputs"),
        "--image_size", json.dumps(list(image_size)), "--num_epochs", str(num_epochs),
        "--learning_rate", str(learning_rate), "--seed", str(seed), "--num_workers", "0",
    ]  # fmt: skip


RECIPE_VARIANTS = {"default": [], "EMS": ["configs/training/ems.json"], "SWA": ["configs/training/swa.json"]}


def _read_run(log: str) -> dict[str, float | None]:
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
    seeds: tuple[int, ...] = (0, 1, 2),
    out: str = "outputs/benchmarks/recipe",
    reuse: bool = False,
) -> None:
    """Validation mean Dice of the default recipe, with EMS, and with SWA: same data, seeds and epochs.

    Each variant stacks its override file on train.json; every run trains from scratch in ``out/{variant}/seed{s}``.

    Args:
        datalist_file: a prepared datalist (``nerveseg prepare``), e.g. of the USGRA-seg nerve images.
        bundle_root: the bundle folder holding ``configs/``.
        image_size: training size.
        num_epochs: epochs per run.
        learning_rate: the runs' learning rate.
        seeds: one run per seed and variant.
        out: folder of the runs, ``recipe.json`` and ``recipe.md``.
        reuse: keep runs whose log already shows the last epoch (to finish an interrupted benchmark).
    """
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    results = []
    for variant, overrides in RECIPE_VARIANTS.items():
        for seed in seeds:
            run = folder / variant.lower() / f"seed{seed}"
            configs = [root / "configs" / "train.json", *(root / o for o in overrides)]
            command = train_command(root, configs, datalist_file, run, image_size, num_epochs, learning_rate, seed)
            log = run / "outputs" / "train.log"
            done = reuse and log.is_file() and f"Epoch[{num_epochs}] Metrics -- val_mean_dice" in log.read_text()
            start = time.perf_counter()
            if not done:
                finished = subprocess.run(command, capture_output=True, text=True)
                if finished.returncode != 0:
                    raise SystemExit(f"{variant} seed {seed} failed:\n{finished.stderr[-3000:]}")
            row = {"variant": variant, "seed": seed, "seconds": None if done else time.perf_counter() - start}
            row.update(_read_run(log.read_text()))
            results.append(row)
            print(json.dumps(row), flush=True)

    lines = [
        f"{Path(datalist_file)}, {list(image_size)}, {num_epochs} epochs, lr {learning_rate}, seeds {list(seeds)}; "
        f"{_machine()}.",
        "",
        "| recipe | best-epoch val Dice, mean ± sd | last-epoch val Dice | SWA weights val Dice |",
        "|---|---|---|---|",
    ]
    for variant in RECIPE_VARIANTS:
        rows = [r for r in results if r["variant"] == variant]
        cells = []
        for key in ("best", "last", "swa"):
            values = [r[key] for r in rows if r[key] is not None]
            cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else "-")
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("recipe.md", "\n".join(lines) + "\n"), ("recipe.json", json.dumps(results, indent=2))):
        write_text_atomically(folder / name, text)
    print("\n".join(lines))


INFERERS = {"single view": [], "flip TTA (mean)": ["configs/flip_tta.json"], "ASME": ["configs/asme.json"]}


def inference(
    datalist_file: str,
    ckpt_dir: str,
    bundle_root: str = ".",
    image_size: tuple[int, int] = (128, 128),
    out: str = "outputs/benchmarks/inference",
) -> None:
    """Mean Dice of one checkpoint with a single view, mean flip TTA and ASME, each with default and tuned
    post-processing; and whether ASME's consistency predicts Dice.

    The validation split is dealt in two halves: post-processing is tuned on the first (``nerveseg
    tune-postprocessing``'s search) and every figure is measured on the second, so tuning does not flatter it.
    The consistency analysis (Spearman correlation, scatter plot) uses the whole validation split.

    Args:
        datalist_file: the prepared datalist the checkpoint was trained with.
        ckpt_dir: the folder holding its ``model.pt``.
        bundle_root: the bundle folder holding ``configs/``.
        image_size: the size the checkpoint was trained at.
        out: folder for the split datalists, the evaluations, ``inference.json`` and ``inference.md``.
    """
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    datalist = json.loads(Path(datalist_file).read_text())
    base = Path(datalist_file).resolve().parent

    def absolute(items: list[dict]) -> list[dict]:
        return [{k: str(base / v) if k in ("image", "label") else v for k, v in item.items()} for item in items]

    halves = {"tune": datalist["validation"][0::2], "report": datalist["validation"][1::2]}
    files = {}
    for name, items in {**halves, "all": datalist["validation"]}.items():
        files[name] = folder / f"{name}.json"
        files[name].write_text(json.dumps({"training": absolute(datalist["training"]), "validation": absolute(items)}))
    common = {"bundle_root": str(root), "ckpt_dir": str(Path(ckpt_dir).resolve()), "image_size": list(image_size)}

    def evaluate(extra: list[str], split: str, name: str, settings: dict) -> dict:
        run = folder / name
        configs = [str(root / "configs" / c) for c in ("train.json", "evaluate.json")] + [str(root / e) for e in extra]
        arguments = {**common, "datalist_file": str(files[split]), "output_dir": str(run), **settings}
        command = [sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", json.dumps(configs)]
        for key, value in arguments.items():
            command += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            raise SystemExit(f"evaluation {name} failed:\n{finished.stderr[-3000:]}")
        return json.loads((run / "eval" / "summary.json").read_text())

    rows = []
    for inferer, extra in INFERERS.items():
        configs = [str(root / "configs" / c) for c in ("train.json", "evaluate.json")] + [str(root / e) for e in extra]
        overrides = {**common, "datalist_file": str(files["tune"]), "output_dir": str(folder / "tuning")}
        probabilities, labels, presence = tuning.validation_probabilities(configs, overrides)
        tuned, _ = tuning.choose_postprocessing(probabilities, labels, presence)
        settings = {"threshold": tuned.threshold, "min_area": tuned.min_area, "gate_threshold": tuned.gate_threshold}
        slug = inferer.split(" ")[0].lower()
        default = evaluate(extra, "report", f"{slug}_default", {})
        after = evaluate(extra, "report", f"{slug}_tuned", settings)
        rows.append({"inferer": inferer, "default": default["mean_dice"], "tuned": after["mean_dice"], **settings})
        print(json.dumps(rows[-1]), flush=True)
    consistency = evaluate(INFERERS["ASME"], "all", "asme_all", {})

    rho = consistency.get("consistency_dice_spearman", {})
    lines = [
        f"{Path(datalist_file)}, checkpoint {Path(ckpt_dir)}/model.pt at {list(image_size)}; tuned on "
        f"{len(halves['tune'])} validation images, measured on the other {len(halves['report'])}; {_machine()}.",
        "",
        "| inferer | mean Dice, default post-processing | mean Dice, tuned | tuned threshold, min_area |",
        "|---|---:|---:|---|",
        *(
            f"| {r['inferer']} | {r['default']:.4f} | {r['tuned']:.4f} | {r['threshold']}, {r['min_area']} |"
            for r in rows
        ),
        "",
        f"ASME consistency vs Dice over all {consistency['images']} validation images: Spearman rho "
        f"{rho.get('rho', float('nan')):.3f} (p = {rho.get('p', float('nan')):.3g}); "
        f"plot: {folder / 'asme_all' / 'eval' / 'consistency_vs_dice.png'}",
    ]
    for name, text in (("inference.md", "\n".join(lines) + "\n"), ("inference.json", json.dumps(rows, indent=2))):
        write_text_atomically(folder / name, text)
    print("\n".join(lines))
