"""``nerveseg bench``: speed and quality of the bundle, measured side by side in one run on one machine.

The suite's parts, each also runnable alone (``nerveseg bench PART``):

- ``latency``: forward time per image of every network config, at each size and batch, for every execution path
  (eager float32, channels-last, bfloat16 autocast, both, OpenVINO, ``torch.compile`` for the default network, ONNX
  Runtime).
- ``asme``: the default network's ASME ensemble with 4 views in one batch, 4 views one at a time, the shipped early
  stop (on a random image), and 1 view.
- ``peer``: segmentation_models_pytorch's ``Unet`` (EfficientNet-b1) against our FlexibleUNet-b1, same input.
- ``training``: training throughput at 448x576 with train.json's transforms and loader, the share of each step
  spent waiting for data, and the trainer's step against a bare PyTorch loop of the same step.
- ``live``: configs/live.json's live path from decoded frame to mask, as ``nerveseg live`` runs it (its backend and
  precision), on consecutive 580x420 frames; ``nerveseg bench live`` alone times every size and backend.
- ``quality``: the default recipe trained on the USGRA nerve images at a reduced size, evaluated with the eager and
  the default (accelerated) inference paths; and ASME's Dice/cost curve over its early-stop agreement on the
  validation images with the first seed's network (which gives ``asme_ratio_cpu``, the shipped early stop's cost
  on real images; without the quality part it is measured on a random image); and each seed's model quantized to
  int8 on its validation split (``int8_dice_delta``: int8's mean Dice minus OpenVINO float32's; ``int8_speedup``:
  the network's time in OpenVINO float32 over int8's, batch 1; with the int8 extra).
- ``quickstart``: the README's Quick start training command, timed from a cold data cache.

The suite writes ``bench.json`` (with the headline ratios at the top level) and ``bench.md``; a part run alone
writes the same keys for that part into ``{part}.json`` and ``{part}.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from nerveseg.bundle.runs import build_network, config_files
from nerveseg.scripts.bench.asme_timing import (
    asme_curve_markdown,
    asme_dice_cost_curve,
    asme_markdown,
    measure_asme,
    shipped_asme,
)
from nerveseg.scripts.bench.execution_paths import default_path, inference_settings
from nerveseg.scripts.bench.latency import fast_vs_eager_ratio, latency_markdown, measure_latency
from nerveseg.scripts.bench.live_latency import live_suite_markdown, measure_live
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.peer_comparison import measure_peer, peer_markdown
from nerveseg.scripts.bench.quality import measure_quality, quality_markdown
from nerveseg.scripts.bench.quickstart import measure_quickstart, quickstart_markdown
from nerveseg.scripts.bench.results import write_results
from nerveseg.scripts.bench.scoring import split_pairs
from nerveseg.scripts.bench.trainer_overhead import measure_trainer_overhead, trainer_overhead_markdown
from nerveseg.scripts.bench.training_throughput import measure_training, training_markdown
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import read_state_dict

__all__ = ["SUITE_PARTS", "asme", "latency", "markdown", "peer", "quality", "run_suite", "training"]

SUITE_PARTS = ("latency", "asme", "peer", "training", "live", "quality", "quickstart")

HEADLINES = {
    "peer_ratio": "peer",
    "fast_vs_eager_ratio": "latency",
    "asme_ratio_cpu": "asme",
    "asme_full_ratio_cpu": "asme",
    "trainer_overhead_ratio": "training",
    "data_wait_fraction": "training",
    "live_ms_p50": "live",
    "live_ms_p99": "live",
    "quality_mean_dice": "quality",
    "int8_dice_delta": "quality",
    "int8_speedup": "quality",
    "quickstart_seconds": "quickstart",
}
"""The top-level numbers of ``bench.json``, in their order, and the part that fills each."""

HEADLINE_ROWS = (*list(HEADLINES)[:3], "asme_ratio_gpu", *list(HEADLINES)[3:])
"""The headline table's rows: the GPU's ASME ratio (measured where there is a GPU) beside the CPU's."""

USGRA = "../shared/data/usgra_seg"


def run_suite(
    parts: Sequence[str] = (),
    name: str = "bench",
    out: str = "outputs/bench",
    quick: bool = False,
    bundle_root: str = ".",
    data: str = USGRA,
    seeds: Sequence[int] = (0, 1, 2),
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the suite's ``parts``; write ``{name}.json`` and ``{name}.md`` into ``out``.

    Args:
        parts: any of :data:`SUITE_PARTS`; none runs them all (quality only where ``data`` exists; quality and
            quickstart in quick mode only when named).
        name: the stem of the two files written.
        out: folder for them and the runs behind them (``training/``, ``quality/``).
        quick: a smoke run in about a minute: the default network only, 448x576 batch 1, two timed repetitions,
            bfloat16 only where the CPU computes it natively, no ``torch.compile`` or ONNX, a few training steps,
            and a tiny quality run. Fills the same top-level
            numbers from fewer measurements; do not quote them.
        bundle_root: the bundle folder holding ``configs/``.
        data: the USGRA-seg folder (``../shared/data/usgra_seg``) for the quality part.
        seeds: training seeds of the quality part (quick mode uses the first).
        threads: CPU threads for torch and ONNX Runtime; by default torch's (the machine's cores).
    """
    unknown = [p for p in parts if p not in SUITE_PARTS]
    if unknown:
        raise UserInputError(f"Unknown parts {unknown}; choose from {', '.join(SUITE_PARTS)}.")
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    config_files(root, "configs/inference.json", "configs/train.json")
    if threads is not None:
        torch.set_num_threads(int(threads))
    long_parts = ("quality", "quickstart")  # trainings: run by the full suite, and in quick mode only when named
    selected = list(parts) or [
        p for p in SUITE_PARTS if not (quick and p in long_parts) and (p != "quality" or Path(data).is_dir())
    ]
    if "quality" in selected and not Path(data).is_dir():
        raise UserInputError(f"{data} not found; pass --data, the USGRA-seg folder, for the quality part.")
    folder.mkdir(parents=True, exist_ok=True)

    path = default_path(root)
    machine = describe_machine()
    results: dict[str, Any] = {"machine": machine, "cpu_isa": machine["cpu_isa"], "quick": bool(quick)}
    results["backend"] = path["backend"]
    results["default_path"] = path
    results.update({key: None for key, part in HEADLINES.items() if not parts or part in selected})
    print(f"{results['machine']['summary']}; default path {path['name']}", flush=True)
    if "latency" in selected:
        results["latency"] = measure_latency(root, folder, quick)
        results["fast_vs_eager_ratio"] = fast_vs_eager_ratio(results["latency"], path["name"])
    if "asme" in selected:
        results["asme"] = measure_asme(root, quick)
        results["asme_full_ratio_cpu"] = results["asme"]["ratio_batched_vs_single"]
        results["asme_ratio_cpu"] = results["asme"]["ratio_adaptive_vs_single"]  # real images' figure: quality's
        if torch.cuda.is_available():
            results["asme_gpu"] = measure_asme(root, quick, "cuda")
            results["asme_ratio_gpu"] = results["asme_gpu"]["ratio_batched_vs_single"]
    if "peer" in selected:
        results["peer"] = measure_peer(root, path["name"], quick)
        results["peer_ratio"] = results["peer"].get("peer_ratio")
    if "training" in selected:
        results["training"] = measure_training(root, folder / "training", quick)
        results["data_wait_fraction"] = results["training"]["data_wait_fraction"]
        results["trainer_overhead"] = measure_trainer_overhead(root, folder / "trainer_overhead", quick)
        results["trainer_overhead_ratio"] = results["trainer_overhead"]["trainer_overhead_ratio"]
    if "live" in selected:
        results["live"] = measure_live(root, folder / "live", quick)
        results["live_ms_p50"], results["live_ms_p99"] = results["live"]["p50_ms"], results["live"]["p99_ms"]
    if "quality" in selected:
        results["quality"] = measure_quality(root, Path(data), folder / "quality", seeds[:1] if quick else seeds, quick)
        results["quality_mean_dice"] = results["quality"]["mean_dice_default_path"]
        results["int8_dice_delta"] = results["quality"]["int8_dice_delta"]
        results["int8_speedup"] = results["quality"]["int8_speedup"]
        results["asme_curve"] = _asme_curve(root, folder / "quality", results["quality"])
        shipped = shipped_asme(root).stop_agreement
        point = next(p for p in results["asme_curve"]["points"] if p["stop_agreement"] == shipped)
        results["asme_ratio_cpu"] = point["x_one_view"]
    if "quickstart" in selected:
        results["quickstart"] = measure_quickstart(root, folder / "quickstart")
        results["quickstart_seconds"] = results["quickstart"]["seconds"]
    write_results(folder, name, results, markdown(results, "nerveseg bench" + ("" if name == "bench" else f" {name}")))
    return results


def _asme_curve(bundle_root: Path, folder: Path, quality: dict[str, Any]) -> dict[str, Any]:
    """ASME's Dice/cost curve over its early-stop agreement, with the first quality seed's network on the default
    path, on the validation images of the quality runs."""
    seed = quality["runs"][0]["seed"]
    image_size = quality["image_size"]
    network = build_network(config_files(bundle_root, "configs/train.json"), {"image_size": image_size})
    network.load_state_dict(read_state_dict(folder / f"seed{seed}" / "models" / "model.pt", what="Quality model"))
    pairs = split_pairs(bundle_root, folder / "data" / "datalist.json", image_size)
    curve = asme_dice_cost_curve(network, pairs, settings=inference_settings(bundle_root))
    curve["seed"] = seed
    return curve


def markdown(results: dict[str, Any], title: str = "nerveseg bench") -> str:
    """The tables of ``results`` for docs/README.md, headed by the machine they were measured on."""
    quick = " (quick mode: few repetitions, do not quote)" if results["quick"] else ""
    lines = [f"# {title}", "", f"Measured {results['machine']['summary']}{quick}.", ""]
    lines += ["| headline | value |", "|---|---:|"]
    for key in HEADLINE_ROWS:
        if key not in results:
            continue
        lines.append(f"| `{key}` | {'-' if results[key] is None else f'{results[key]:.3f}'} |")
    lines += [
        "",
        f"Default inference path (configs/inference.json on this machine): {results['default_path']['name']}.",
    ]
    tables = (
        ("latency", latency_markdown),
        ("asme", asme_markdown),
        ("asme_gpu", asme_markdown),
        ("peer", peer_markdown),
        ("training", training_markdown),
        ("trainer_overhead", trainer_overhead_markdown),
        ("live", live_suite_markdown),
        ("quality", quality_markdown),
        ("asme_curve", asme_curve_markdown),
        ("quickstart", quickstart_markdown),
    )
    for part, table in tables:
        if part in results and "skipped" not in results[part]:
            lines += ["", *table(results[part])]
    return "\n".join(lines) + "\n"


_OPTIONS = """

    Args:
        out: folder of the json and md files and the runs behind them.
        quick: a smoke run of few repetitions (do not quote it).
        bundle_root: the bundle folder holding ``configs/``.
        threads: CPU threads for torch and ONNX Runtime; by default torch's."""


def _timing_part(name: str, summary: str) -> Callable[..., dict[str, Any]]:
    """The command of one timing part run alone: its results into ``{name}.json`` and ``{name}.md``."""

    def run(out: str = "outputs/bench", quick: bool = False, bundle_root: str = ".", threads: int | None = None):
        return run_suite([name], name, out, quick, bundle_root, threads=threads)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"{summary} ({name}.json, {name}.md).{_OPTIONS}"
    return run


latency = _timing_part("latency", "Forward latency of every network config on every execution path")
asme = _timing_part("asme", "ASME's 4 views batched and one by one against 1 view, on the CPU (and a GPU)")
peer = _timing_part("peer", "FlexibleUNet-b1 against segmentation_models_pytorch's Unet-b1")
training = _timing_part("training", "Training images/s, the data-wait share and the trainer's overhead")


def quality(
    out: str = "outputs/bench",
    quick: bool = False,
    bundle_root: str = ".",
    data: str = USGRA,
    seeds: Sequence[int] = (0, 1, 2),
    threads: int | None = None,
):
    """The default recipe's validation Dice on USGRA-seg, eager and default path (``quality.json``, ``quality.md``).

    Args:
        out: folder of the json and md files and the runs behind them (``quality/``).
        quick: one seed of 2 epochs at 64x64 (do not quote it).
        bundle_root: the bundle folder holding ``configs/``.
        data: the USGRA-seg folder (``images/``, ``masks/``).
        seeds: one training per seed.
        threads: CPU threads for torch; by default torch's.
    """
    return run_suite(["quality"], "quality", out, quick, bundle_root, data, seeds, threads)
