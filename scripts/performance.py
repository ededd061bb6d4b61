"""``nerveseg bench``: speed and quality of the bundle, measured side by side in one run on one machine.

Parts (all by default; name some to run only those):

- ``latency``: forward time per image of every network config, at each size and batch, for every execution path
  (eager float32, channels-last, bfloat16 autocast, both, ``torch.compile`` for the default network, ONNX Runtime).
- ``asme``: the default network's ASME ensemble with 4 views in one batch, 4 views one at a time, and 1 view.
- ``peer``: segmentation_models_pytorch's ``Unet`` (EfficientNet-b1) against our FlexibleUNet-b1, same input.
- ``training``: training throughput at 448x576 with train.json's transforms and loader, and the share of each step
  spent waiting for data.
- ``quality``: the default recipe trained on the USGRA nerve images at a reduced size, evaluated with the eager and
  the default (accelerated) inference paths.

Everything lands in ``bench.json`` (with the headline ratios at the top level) and ``bench.md``.
"""

from __future__ import annotations

import copy
import datetime
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monai
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.inferers import SimpleInferer
from torch import nn

from nerveseg.bundle.data.prepare import prepare
from nerveseg.bundle.data.synthetic import generate_dataset
from nerveseg.bundle.files import write_text_atomically
from nerveseg.bundle.inferers import AcceleratedInferer, ASMEInferer, resolve_precision
from nerveseg.networks.profile import count_parameters, cpu_model, forward_flops, time_side_by_side
from nerveseg.scripts.benchmarks import network_variants, train_command

PARTS = ("latency", "asme", "peer", "training", "quality")

PATHS = {
    "eager fp32": {"precision": "float32", "channels_last": False},
    "channels_last fp32": {"precision": "float32", "channels_last": True},
    "bf16 autocast": {"precision": "bfloat16", "channels_last": False},
    "channels_last + bf16": {"precision": "bfloat16", "channels_last": True},
}
"""The execution paths every network is timed on, as :class:`AcceleratedInferer` settings."""

DEFAULT_NETWORK = "FlexibleUNet efficientnet-b1"


def bench(
    *parts: str,
    out: str = "outputs/bench",
    quick: bool = False,
    bundle_root: str = ".",
    data: str = "../shared/data/usgra_seg",
    seeds: tuple[int, ...] = (0, 1, 2),
    threads: int | None = None,
) -> None:
    """Run the benchmark suite; write ``bench.json`` and ``bench.md`` into ``out``.

    Args:
        parts: any of latency, asme, peer, training, quality; none runs them all (quality only where ``data``
            exists, and in quick mode only when named).
        out: folder for ``bench.json``, ``bench.md`` and the runs behind them.
        quick: a smoke run in about a minute: the default network only, 448x576 batch 1, two timed repetitions,
            no ``torch.compile`` or ONNX, a few training steps, and a tiny quality run. Fills the same top-level
            numbers from fewer measurements; do not quote them.
        bundle_root: the bundle folder holding ``configs/``.
        data: the USGRA-seg folder (``../shared/data/usgra_seg``) for the quality part.
        seeds: training seeds of the quality part (quick mode uses the first).
        threads: CPU threads for torch and ONNX Runtime; by default torch's (the machine's cores).
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"Unknown parts {unknown}; choose from {', '.join(PARTS)}.")
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    configs = root / "configs"
    if not (configs / "inference.json").is_file():
        raise SystemExit(f"{configs / 'inference.json'} not found; pass --bundle_root, the folder holding configs/.")
    if threads is not None:
        torch.set_num_threads(int(threads))
    selected = list(parts) or [p for p in PARTS if p != "quality" or (not quick and Path(data).is_dir())]
    if "quality" in selected and not Path(data).is_dir():
        raise SystemExit(f"{data} not found; pass --data, the USGRA-seg folder, for the quality part.")
    folder.mkdir(parents=True, exist_ok=True)

    default_path = _default_path(configs)
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": bool(quick),
        "default_path": default_path,
        "peer_ratio": None,
        "fast_vs_eager_ratio": None,
        "asme_ratio_cpu": None,
        "data_wait_fraction": None,
        "quality_mean_dice": None,
    }
    print(f"{results['machine']['summary']}; default path {default_path['name']}", flush=True)
    if "latency" in selected:
        results["latency"] = latency(configs, folder, quick)
        results["fast_vs_eager_ratio"] = _ratio(
            results["latency"], DEFAULT_NETWORK, default_path["name"], "eager fp32", (448, 576), 1
        )
    if "asme" in selected:
        results["asme"] = asme(configs, quick)
        results["asme_ratio_cpu"] = results["asme"]["ratio_batched_vs_single"]
        if torch.cuda.is_available():
            results["asme_gpu"] = asme(configs, quick, "cuda")
            results["asme_ratio_gpu"] = results["asme_gpu"]["ratio_batched_vs_single"]
    if "peer" in selected:
        results["peer"] = peer(configs, default_path["name"], quick)
        results["peer_ratio"] = results["peer"].get("peer_ratio")
    if "training" in selected:
        results["training"] = training(configs, folder / "training", quick)
        results["data_wait_fraction"] = results["training"]["data_wait_fraction"]
    if "quality" in selected:
        results["quality"] = quality(root, Path(data), folder / "quality", seeds[:1] if quick else seeds, quick)
        results["quality_mean_dice"] = results["quality"]["mean_dice_default_path"]

    write_text_atomically(folder / "bench.json", json.dumps(results, indent=2))
    write_text_atomically(folder / "bench.md", markdown(results))
    print(markdown(results))
    print(f"Saved {folder / 'bench.json'} and {folder / 'bench.md'}")


def machine() -> dict[str, Any]:
    """The CPU, threads, device and library versions every timing belongs to."""
    cpu = cpu_model()
    versions = {"torch": torch.__version__, "monai": monai.__version__}
    for package in ("onnxruntime", "segmentation-models-pytorch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        **versions,
    }
    info["summary"] = (
        f"{info['date']}, {cpu} ({info['threads']} threads; GPU: {info['gpu'] or 'none'}), torch {info['torch']}, "
        f"MONAI {info['monai']}"
    )
    return info


def _default_path(configs: Path) -> dict[str, Any]:
    """The execution path configs/inference.json selects on this machine, and its name in :data:`PATHS`."""
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    precision = resolve_precision(parser["inference_precision"], "cpu")
    channels_last = bool(parser["channels_last"])
    name = next(
        (
            n
            for n, p in PATHS.items()
            if resolve_precision(p["precision"], "cpu") == precision and p["channels_last"] == channels_last
        ),
        None,
    )
    if name is None:
        raise SystemExit(
            f"inference.json's path ({precision}, channels_last={channels_last}) is not one of {list(PATHS)}."
        )
    return {"name": name, "precision": str(precision).removeprefix("torch."), "channels_last": channels_last}


def _network(stack: list[Path], overrides: dict) -> nn.Module:
    parser = ConfigParser()
    parser.read_config([str(p) for p in stack])
    for key, value in overrides.items():
        parser[key] = value
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def").eval()


def _path_call(network: nn.Module, images: torch.Tensor, path: str) -> Callable[[], torch.Tensor]:
    """A no-argument call of ``network`` on ``images`` through one execution path (on its own copy)."""
    inferer = AcceleratedInferer(SimpleInferer(), **PATHS[path])
    own = copy.deepcopy(network)
    return lambda: inferer(images, own)


def latency(configs: Path, folder: Path, quick: bool) -> list[dict]:
    """Per-image forward latency of every network config on every path, all paths of a setting interleaved.

    Each row also has ``max_abs_diff``, the largest difference of the path's logits from eager float32 on the
    same random input: what the path costs in accuracy before any threshold.
    """
    variants = [v for v in network_variants(configs, backbones=("efficientnet-b1",)) if "classifier" not in v[0]]
    settings = [((448, 576), 1)] if quick else [((448, 576), 1), ((448, 576), 8), ((256, 256), 1), ((256, 256), 8)]
    onnx_missing = None if quick else _missing("onnxruntime")
    if onnx_missing:
        print(f"ONNX Runtime path skipped: {onnx_missing}", flush=True)
    rows = []
    for name, stack, overrides in variants[:1] if quick else variants:
        network = _network(stack, overrides)
        sessions: dict[tuple[int, int], tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {}
        for size, batch in settings:
            images = torch.rand(batch, 1, *size)
            calls = {path: _path_call(network, images, path) for path in PATHS}
            seconds = {}
            if not quick and not onnx_missing:
                if size not in sessions:
                    sessions[size] = _onnx_session(stack, overrides, network, size, folder)
                run, seconds["export_s"] = sessions[size]
                calls["onnxruntime fp32"] = lambda run=run, images=images: run(images)
            if not quick and name == DEFAULT_NETWORK and size == (448, 576):
                calls["torch.compile channels_last + bf16"], seconds["compile_s"] = _compiled_call(network, images)
            with torch.inference_mode():
                reference = network(images)
                differences = {path: (call() - reference).abs().max().item() for path, call in calls.items()}
            repeats = 2 if quick else (5 if batch == 1 else 3)
            for path, timing in time_side_by_side(calls, repeats=repeats, warmup=1).items():
                row = {"network": name, "size": list(size), "batch": batch, "path": path, "repeats": repeats}
                row.update({k: timing[k] / batch for k in ("median", "min", "max")})
                row["max_abs_diff"] = differences[path]
                if path.startswith("torch.compile"):
                    row["compile_s"] = seconds["compile_s"]
                if path.startswith("onnxruntime"):
                    row["export_s"] = seconds["export_s"]
                rows.append(row)
                print(
                    f"{name:<36}{str(size):>12}{batch:>3}  {path:<36}{row['median']:>9.4f} s/image "
                    f"[{row['min']:.4f}, {row['max']:.4f}]  max |diff| {row['max_abs_diff']:.2e}",
                    flush=True,
                )
    return rows


def _missing(module: str) -> str | None:
    """Why ``module`` cannot be imported (it comes with the benchmark extra), or ``None``."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{error}; install the benchmark extra: pip install -e '.[benchmark]'"
    return None


def _compiled_call(network: nn.Module, images: torch.Tensor) -> tuple[Callable[[], torch.Tensor], float]:
    """``torch.compile`` (inductor) of the channels-last bf16 path; returns the call and the compile seconds."""
    inferer = AcceleratedInferer(SimpleInferer(), precision="bfloat16", channels_last=True)
    compiled = torch.compile(copy.deepcopy(network).to(memory_format=torch.channels_last))
    start = time.perf_counter()
    with torch.inference_mode():
        inferer(images, compiled)
    return (lambda: inferer(images, compiled)), time.perf_counter() - start


def _onnx_session(
    stack: list[Path], overrides: dict, network: nn.Module, size: tuple[int, int], folder: Path
) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """ONNX Runtime (CPU, float32) of ``network`` exported by ``monai.bundle onnx_export`` (traced, any batch size).

    Returns the run function and the export seconds. The export is traced at ``size``, which the graph keeps.
    """
    import onnxruntime
    from monai.bundle import onnx_export

    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        weights, model = Path(scratch) / "model.pt", Path(scratch) / "model.onnx"
        torch.save(network.state_dict(), weights)
        start = time.perf_counter()
        onnx_export(
            net_id="network_def",
            filepath=str(model),
            ckpt_file=str(weights),
            config_file=[str(p) for p in stack],
            use_trace=True,
            input_shape=[1, 1, *size],
            converter_kwargs={
                "dynamo": False,
                "input_names": ["image"],
                "output_names": ["logits"],
                "dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}},
            },
            **overrides,
        )
        export_s = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Planned and pooled buffers would hold the largest networks' batch-8 activations (>20 GiB) between runs.
        options.enable_cpu_mem_arena, options.enable_mem_pattern = False, False
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return (lambda images: torch.from_numpy(session.run(None, {"image": images.numpy()})[0])), export_s


def _ratio(rows: list[dict], network: str, path: str, reference: str, size: tuple[int, int], batch: int) -> float:
    def median(p: str) -> float:
        return next(
            r["median"]
            for r in rows
            if (r["network"], tuple(r["size"]), r["batch"], r["path"]) == (network, size, batch, p)
        )

    return median(path) / median(reference)


def asme(configs: Path, quick: bool, device: str = "cpu") -> dict[str, Any]:
    """The default network at 448x576, batch 1, on the default path: 4 views in one batch or one at a time vs 1."""
    device = torch.device(device)
    network = _network([configs / "train.json"], {}).to(device)
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    settings = {"precision": parser["inference_precision"], "channels_last": bool(parser["channels_last"])}
    views = ("identity", "lr", "ud", "both")
    image = torch.rand(1, 1, 448, 576, device=device)
    inferers = {
        "1 view": SimpleInferer(),
        "4 views batched": ASMEInferer(views=views, max_batch=len(views)),
        "4 views sequential": ASMEInferer(views=views, max_batch=1),
    }
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    calls = {}
    for name, inner in inferers.items():
        inferer, own = AcceleratedInferer(inner, **settings), copy.deepcopy(network)
        calls[name] = lambda inferer=inferer, own=own: (inferer(image, own), synchronize())
    timings = time_side_by_side(calls, repeats=2 if quick else 7, warmup=1)
    single = timings["1 view"]["median"]
    result = {name: {k: timing[k] for k in ("median", "min", "max")} for name, timing in timings.items()}
    result.update(
        device=str(device),
        ratio_batched_vs_single=timings["4 views batched"]["median"] / single,
        ratio_sequential_vs_single=timings["4 views sequential"]["median"] / single,
        path={**settings, "precision": str(resolve_precision(settings["precision"], device)).removeprefix("torch.")},
    )
    print(json.dumps(result), flush=True)
    return result


def peer(configs: Path, default_path: str, quick: bool) -> dict[str, Any]:
    """segmentation_models_pytorch ``Unet(efficientnet-b1)`` against our FlexibleUNet-b1, interleaved, same input."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError as error:
        reason = f"{error}; the peer comes with the benchmark extra: pip install -e '.[benchmark]'"
        print(f"peer skipped: {reason}", flush=True)
        return {"skipped": reason}
    torch.manual_seed(0)
    theirs = smp.Unet(encoder_name="efficientnet-b1", encoder_weights=None, in_channels=1, classes=1).eval()
    ours = _network([configs / "train.json"], {})
    image = torch.rand(1, 1, 448, 576)
    calls = {}
    for path in ("eager fp32", "channels_last fp32", default_path):
        calls[f"ours {path}"] = _path_call(ours, image, path)
        calls[f"smp {path}"] = _path_call(theirs, image, path)
    timings = time_side_by_side(calls, repeats=2 if quick else 7, warmup=1)
    best_format = min(("eager fp32", "channels_last fp32"), key=lambda p: timings[f"smp {p}"]["median"])
    result = {name: {k: timing[k] for k in ("median", "min", "max")} for name, timing in timings.items()}
    result.update(
        smp_best_fp32_path=best_format,
        peer_ratio=timings[f"ours {default_path}"]["median"] / timings[f"smp {best_format}"]["median"],
        peer_ratio_same_path=timings[f"ours {default_path}"]["median"] / timings[f"smp {default_path}"]["median"],
        peer_ratio_eager=timings["ours eager fp32"]["median"] / timings["smp eager fp32"]["median"],
        parameters={"ours": count_parameters(ours), "smp": count_parameters(theirs)},
        gflops={"ours": forward_flops(ours, image.shape) / 1e9, "smp": forward_flops(theirs, image.shape) / 1e9},
    )
    print(json.dumps(result), flush=True)
    return result


def training(configs: Path, folder: Path, quick: bool) -> dict[str, Any]:
    """Training images/s at 448x576 with train.json's transforms, loader and trainer, and the data-wait share.

    The data is the embedded synthetic default (580x420 frames). Validation, checkpoints and logging handlers are
    left out so only training steps are timed; the first steps (loader start-up) are not counted.
    """
    data = folder / "data"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, num_subjects=2 if quick else 4, frames_per_subject=4 if quick else 10, num_test_images=0)
    parser = ConfigParser()
    parser.read_config(str(configs / "train.json"))
    parser["dataset_dir"] = str(data)
    parser["val_fraction"] = 0.25
    parser["ckpt_dir"] = str(folder / "models")
    parser["output_dir"] = str(folder / "outputs")
    parser["train#trainer#train_handlers"] = []
    if quick:
        parser["batch_size"], parser["num_workers"] = 2, 2
    trainer = parser.get_parsed_content("train#trainer")
    warmup, measured = (1, 2) if quick else (3, 12)
    stamps: dict[str, float | int] = {}
    data_s, step_s, images = [], [], []

    @trainer.on(Events.GET_BATCH_STARTED)
    def _fetch_started(engine):
        stamps["fetch"] = time.perf_counter()

    @trainer.on(Events.GET_BATCH_COMPLETED)
    def _fetch_completed(engine):
        stamps["fetched"] = time.perf_counter()
        stamps["images"] = len(engine.state.batch["image"])  # collated here; decollated by the step's end

    @trainer.on(Events.ITERATION_COMPLETED)
    def _step_completed(engine):
        now = time.perf_counter()
        if engine.state.iteration > warmup:
            data_s.append(stamps["fetched"] - stamps["fetch"])
            step_s.append(now - stamps["fetch"])
            images.append(stamps["images"])
        if engine.state.iteration >= warmup + measured:
            engine.terminate()

    trainer.run()
    batch = int(parser["batch_size"])
    result = {
        "image_size": list(parser["image_size"]),
        "batch_size": batch,
        "num_workers": int(parser["num_workers"]),
        "steps": len(step_s),
        "step_s": statistics.median(step_s),
        "images_per_s": sum(images) / sum(step_s),
        "data_wait_fraction": sum(data_s) / sum(step_s),
        "data_wait_max_s": max(data_s),
    }
    print(json.dumps(result), flush=True)
    return result


def quality(root: Path, data: Path, folder: Path, seeds: tuple[int, ...], quick: bool) -> dict[str, Any]:
    """Train the default recipe on USGRA-seg nerve masks per seed; evaluate each with the eager and default paths.

    The images are prepared once with ``nerveseg prepare folders``'s defaults (nerve = class 1; fold 0 of 5 is the
    validation split). Training is train.json at 128x128 for 25 epochs with lr 2e-3, as ``nerveseg
    benchmark-recipe`` (quick: 64x64, 2 epochs); the evaluation is evaluate.json at the original image size.
    """
    datalist = folder / "data" / "datalist.json"
    if not datalist.is_file():
        prepare("folders", src=str(data), out=str(datalist), target_class=1)
    image_size, epochs = ((64, 64), 2) if quick else ((128, 128), 25)
    runs = []
    for seed in seeds:
        run = folder / f"seed{seed}"
        start = time.perf_counter()
        finished = subprocess.run(
            train_command(root, [root / "configs" / "train.json"], datalist, run, image_size, epochs, 0.002, seed),
            capture_output=True,
            text=True,
        )
        if finished.returncode != 0:
            raise SystemExit(f"quality training seed {seed} failed:\n{finished.stderr[-3000:]}")
        row = {"seed": seed, "train_s": time.perf_counter() - start}
        for name, extra in (("eager", ["eager.json"]), ("default_path", [])):
            row[f"dice_{name}"] = _evaluate(root, extra, datalist, run, image_size)
        runs.append(row)
        print(json.dumps(row), flush=True)
    eager = statistics.mean(r["dice_eager"] for r in runs)
    default = statistics.mean(r["dice_default_path"] for r in runs)
    return {
        "data": str(data),
        "image_size": list(image_size),
        "epochs": epochs,
        "learning_rate": 0.002,
        "runs": runs,
        "mean_dice_eager": eager,
        "mean_dice_default_path": default,
        "sd_dice_default_path": statistics.stdev(r["dice_default_path"] for r in runs) if len(runs) > 1 else None,
        "default_minus_eager": default - eager,
        "train_s_total": sum(r["train_s"] for r in runs),
    }


def _evaluate(root: Path, extra: list[str], datalist: Path, run: Path, image_size: tuple[int, int]) -> float:
    """Validation mean Dice of ``run/models/model.pt`` with evaluate.json and ``extra`` override files."""
    configs = [str(root / "configs" / c) for c in ("train.json", "evaluate.json", *extra)]
    output = run / ("eval_" + ("_".join(Path(e).stem for e in extra) or "default"))
    command = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", json.dumps(configs),
        "--bundle_root", str(root), "--datalist_file", str(datalist), "--ckpt_dir", str(run / "models"),
        "--output_dir", str(output), "--image_size", json.dumps(list(image_size)), "--num_workers", "0",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"evaluation of {run} failed:\n{finished.stderr[-3000:]}")
    return json.loads((output / "eval" / "summary.json").read_text())["mean_dice"]


def markdown(results: dict[str, Any]) -> str:
    """The tables of ``results`` for docs/README.md, headed by the machine they were measured on."""
    quick = " (quick mode: few repetitions, do not quote)" if results["quick"] else ""
    lines = ["# nerveseg bench", "", f"Measured {results['machine']['summary']}{quick}.", ""]
    lines += ["| headline | value |", "|---|---:|"]
    for key in (
        "peer_ratio",
        "fast_vs_eager_ratio",
        "asme_ratio_cpu",
        "asme_ratio_gpu",
        "data_wait_fraction",
        "quality_mean_dice",
    ):
        if key not in results:
            continue
        lines.append(f"| `{key}` | {'-' if results[key] is None else f'{results[key]:.3f}'} |")
    lines += [
        "",
        f"Default inference path (configs/inference.json on this machine): {results['default_path']['name']}.",
    ]
    for part, table in (("latency", _latency_md), ("asme", _asme_md), ("asme_gpu", _asme_md), ("peer", _peer_md)):
        if part in results and "skipped" not in results[part]:
            lines += ["", *table(results[part])]
    if "training" in results:
        t = results["training"]
        lines += [
            "",
            f"Training at {t['image_size'][0]}x{t['image_size'][1]}, batch {t['batch_size']}, {t['num_workers']} "
            f"loader workers: {t['images_per_s']:.2f} images/s, {t['step_s']:.2f} s per step (median of {t['steps']}); "
            f"waiting for data {100 * t['data_wait_fraction']:.1f}% of step time "
            f"(longest wait {t['data_wait_max_s']:.3f} s).",
        ]
    if "quality" in results:
        lines += ["", *_quality_md(results["quality"])]
    return "\n".join(lines) + "\n"


def _ms(timing: dict[str, float]) -> str:
    return f"{1e3 * timing['median']:.0f} [{1e3 * timing['min']:.0f}, {1e3 * timing['max']:.0f}]"


def _latency_md(rows: list[dict]) -> list[str]:
    paths = list(dict.fromkeys(r["path"] for r in rows))
    cells = {(r["network"], tuple(r["size"]), r["batch"], r["path"]): _ms(r) for r in rows}
    lines = ["Latency in ms per image: median [min, max].", ""]
    lines += ["| network | input | batch | " + " | ".join(paths) + " |", "|---|---|---:|" + "---:|" * len(paths)]
    for network, size, batch in dict.fromkeys((r["network"], tuple(r["size"]), r["batch"]) for r in rows):
        row = [cells.get((network, size, batch, path), "-") for path in paths]
        lines.append(f"| {network} | {size[0]}x{size[1]} | {batch} | " + " | ".join(row) + " |")
    first = rows[0]["size"], rows[0]["batch"]
    lines += ["", f"Largest logit difference from eager fp32 at {first[0][0]}x{first[0][1]}, batch {first[1]}:", ""]
    lines += ["| network | " + " | ".join(paths) + " |", "|---|" + "---:|" * len(paths)]
    differences = {(r["network"], r["path"]): r["max_abs_diff"] for r in rows if (r["size"], r["batch"]) == first}
    for network in dict.fromkeys(r["network"] for r in rows):
        row = [f"{differences[(network, p)]:.1e}" if (network, p) in differences else "-" for p in paths]
        lines.append(f"| {network} | " + " | ".join(row) + " |")
    compiled = [r["compile_s"] for r in rows if "compile_s" in r]
    exported = [r["export_s"] for r in rows if "export_s" in r]
    if compiled:
        lines += ["", f"torch.compile took {compiled[0]:.0f} s before its first result."]
    if exported:
        span = f"{min(exported):.1f}-{max(exported):.1f} s"
        lines += ["", f"ONNX export (monai.bundle onnx_export, traced): {span} per network and size."]
    return lines


def _asme_md(a: dict[str, Any]) -> list[str]:
    lines = [f"ASME on {a['device']}, default network at 448x576, batch 1, on the default path.", ""]
    lines += ["| inferer | ms per image: median [min, max] | x 1 view |", "|---|---:|---:|"]
    for name in ("1 view", "4 views batched", "4 views sequential"):
        lines.append(f"| {name} | {_ms(a[name])} | {a[name]['median'] / a['1 view']['median']:.2f} |")
    return lines


def _peer_md(p: dict[str, Any]) -> list[str]:
    lines = ["Peer: smp Unet(efficientnet-b1) and our FlexibleUNet-b1 at 448x576, batch 1, interleaved.", ""]
    lines += ["| path | ours, ms: median [min, max] | smp, ms |", "|---|---:|---:|"]
    for path in dict.fromkeys(k.split(" ", 1)[1] for k in p if k.startswith("ours ")):
        lines.append(f"| {path} | {_ms(p['ours ' + path])} | {_ms(p['smp ' + path])} |")
    lines += [
        "",
        f"Parameters: ours {p['parameters']['ours'] / 1e6:.2f} M, smp {p['parameters']['smp'] / 1e6:.2f} M. "
        f"GFLOPs: ours {p['gflops']['ours']:.1f}, smp {p['gflops']['smp']:.1f}. smp's faster float32 format: "
        f"{p['smp_best_fp32_path']}. Ours on the default path over smp on the same path: "
        f"{p['peer_ratio_same_path']:.3f}.",
    ]
    return lines


def _quality_md(q: dict[str, Any]) -> list[str]:
    seeds = [r["seed"] for r in q["runs"]]
    lines = [
        f"Quality: train.json on {q['data']} (nerve), {q['image_size'][0]}x{q['image_size'][1]}, {q['epochs']} epochs, "
        f"lr {q['learning_rate']}, seeds {seeds}; {q['train_s_total'] / 60:.1f} min of training in all.",
        "",
        "| seed | val mean Dice, eager fp32 | val mean Dice, default path | training s |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['seed']} | {r['dice_eager']:.4f} | {r['dice_default_path']:.4f} | {r['train_s']:.0f} |"
        for r in q["runs"]
    ]
    lines.append(f"| mean | {q['mean_dice_eager']:.4f} | {q['mean_dice_default_path']:.4f} | |")
    return lines
