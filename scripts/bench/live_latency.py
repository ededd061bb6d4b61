"""``nerveseg bench live``: the live path's latency, from decoded frame to mask, per input size and backend.

One subject's consecutive frames of the synthetic default data set (580x420, as the challenge's) go through
:class:`~nerveseg.bundle.inference.streaming.StreamingSegmenter` one at a time, as ``nerveseg live`` gives them,
on inference.json's network with seeded random weights (latency does not depend on training) at each size: on
inference.json's own torch path, and on OpenVINO float32 and, where the CPU computes it natively, bfloat16. The
backends of one size take turns frame by frame, so they share the machine's state. The first frame of each
(conversion and compilation) is reported apart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nerveseg.bundle import runs
from nerveseg.bundle.data.synthetic import default_dataset_dir
from nerveseg.bundle.inference.openvino_models import openvino_supports
from nerveseg.bundle.inference.streaming import StreamingSegmenter
from nerveseg.bundle.trained_settings import write_trained_settings
from nerveseg.scripts.bench.machine import describe_machine, unimportable
from nerveseg.scripts.bench.results import write_results
from nerveseg.scripts.live import latency_summary

__all__ = ["LIVE_CONFIGS", "LIVE_PATHS", "live_latency", "live_markdown", "live_suite_markdown", "measure_live"]

LIVE_CONFIGS = ("configs/inference.json", "configs/live.json")
"""The live recipe's config stack, which the suite's ``live_ms_p50`` and ``live_ms_p99`` time."""

LIVE_PATHS = {
    "torch (inference.json)": {"inference_backend": "torch"},
    "openvino fp32": {"inference_backend": "openvino", "inference_precision": "float32"},
    "openvino bf16": {"inference_backend": "openvino", "inference_precision": "bfloat16"},
}
"""Backend name to the inference.json overrides that select it."""


def live_latency(
    out: str = "outputs/bench",
    bundle_root: str = ".",
    sizes: Sequence[Sequence[int]] = ((448, 576), (256, 320), (224, 288)),
    frames: int = 100,
    threads: int | None = None,
    quick: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Time the live path on ``frames`` consecutive frames at each size on each backend here (``live.json``, ``.md``).

    Args:
        out: folder of the json and md files and the checkpoints behind them (``live/``).
        bundle_root: the bundle folder holding ``configs/``.
        sizes: the network's input sizes ``(H, W)``.
        frames: frames per size and backend; the first is reported apart.
        threads: torch and OpenVINO CPU threads (default: torch's).
        quick: 5 frames at the first size only (a smoke run; do not quote it).
        overrides: inference.json ids and values for every run, e.g. a narrower network:
            ``--overrides "{'network_def#features': [16, 16, 32, 64, 128, 16]}"``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    root, folder = Path(bundle_root).resolve(), Path(out).resolve()
    sizes, frames = ([sizes[0]], 5) if quick else (list(sizes), int(frames))
    images, common = _frames(frames), dict(overrides or {})
    rows = []
    for size in sizes:
        checkpoint = _checkpoint(root, folder / "live" / "x".join(map(str, size)), size, common)
        segmenters = {
            name: StreamingSegmenter.from_bundle(
                root, checkpoint, overrides={**common, **path, "image_size": list(size)}
            )
            for name, path in _paths().items()
        }
        milliseconds: dict[str, list[float]] = {name: [] for name in segmenters}
        for frame in images:
            for name, segmenter in segmenters.items():
                start = time.perf_counter()
                segmenter(frame)
                milliseconds[name].append(1e3 * (time.perf_counter() - start))
        for name, times in milliseconds.items():
            path = segmenters[name].execution_path
            row = {"size": list(size), "backend": name, "path": path, **latency_summary([{"ms": t} for t in times])}
            rows.append(row)
            print(f"{str(size):>12}  {name:<24} p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms", flush=True)
    result = {
        "machine": describe_machine(),
        "frame_size": list(images[0].shape),
        "overrides": common,
        "quick": quick,
        "rows": rows,
    }
    lines = ["# nerveseg bench live", "", f"Measured {result['machine']['summary']}.", "", *live_markdown(result)]
    write_results(folder, "live", result, "\n".join(lines) + "\n")
    return result


def measure_live(bundle_root: Path, folder: Path, quick: bool = False) -> dict[str, Any]:
    """configs/live.json's live path as ``nerveseg live`` runs it (its backend and precision, random weights) on
    :func:`_frames`' consecutive frames: the suite's ``live_ms_p50`` and ``live_ms_p99``, the first frame apart.

    Args:
        bundle_root: the bundle folder holding ``configs/``.
        folder: where the random-weights checkpoint is written.
        quick: 5 frames (a smoke run).
    """
    parser = runs.read_config(runs.config_files(bundle_root, *LIVE_CONFIGS))
    size = parser.get_parsed_content("image_size")
    checkpoint = _checkpoint(bundle_root, folder / "x".join(map(str, size)), size, {}, LIVE_CONFIGS)
    segmenter = StreamingSegmenter.from_bundle(bundle_root, checkpoint, LIVE_CONFIGS)
    times = []
    for frame in _frames(5 if quick else 100):
        start = time.perf_counter()
        segmenter(frame)
        times.append({"ms": 1e3 * (time.perf_counter() - start)})
    return {
        "configs": list(LIVE_CONFIGS),
        "size": list(size),
        "backend": segmenter.backend,
        "path": segmenter.execution_path,
        **latency_summary(times),
    }


def live_suite_markdown(result: dict[str, Any]) -> list[str]:
    """The suite's line on :func:`measure_live`."""
    return [
        f"Live path ({' + '.join(result['configs'])}, {'x'.join(map(str, result['size']))}, {result['path']}), "
        f"decoded 580x420 frame to mask over {result['frames']} frames: p50 "
        f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['frames_per_second']:.1f} frames per "
        f"second; first frame {result['first_ms']:.0f} ms."
    ]


def live_markdown(result: dict[str, Any]) -> list[str]:
    """Per size and backend: what ran, the median and 99th percentile ms per frame, frames per second and the first
    frame."""
    height, width = result["frame_size"]
    network = f" Overrides: {result['overrides']}." if result.get("overrides") else ""
    lines = [
        f"From a decoded {width}x{height} frame to its mask (resize, network, probability, resize back, threshold,"
        " rules), one frame at a time: ms per frame, the first frame (conversion and compilation) apart." + network,
        "",
        "| input | backend | ran as | p50 ms | p99 ms | frames/s | first frame ms |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        size = "x".join(map(str, row["size"]))
        lines.append(
            f"| {size} | {row['backend']} | {row['path']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['frames_per_second']:.1f} | {row['first_ms']:.0f} |"
        )
    return lines


def _paths() -> dict[str, dict[str, Any]]:
    """:data:`LIVE_PATHS` that run here."""
    paths = dict(LIVE_PATHS)
    missing = unimportable("openvino")
    if missing:
        print(f"OpenVINO paths skipped: {missing}", flush=True)
        return {"torch (inference.json)": paths["torch (inference.json)"]}
    if not openvino_supports(torch.bfloat16):
        del paths["openvino bf16"]
    return paths


def _frames(count: int) -> list[np.ndarray]:
    """``count`` consecutive frames of the synthetic default data set's first subject, and its next ones."""
    files = sorted(
        (default_dataset_dir() / "train").glob("*[0-9].tif"), key=lambda p: tuple(map(int, p.stem.split("_")))
    )
    frames = []
    for path in files[:count]:
        with Image.open(path) as image:
            frames.append(np.asarray(image.convert("L")))
    return frames


def _checkpoint(
    root: Path,
    folder: Path,
    size: Sequence[int],
    overrides: Mapping[str, Any],
    configs: Sequence[str] = ("configs/inference.json",),
) -> Path:
    """The network of ``configs`` (with ``overrides``) with seeded random weights, saved as if trained at ``size``."""
    parser = runs.read_config(runs.config_files(root, *configs), overrides)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    write_trained_settings(folder, network, size)
    return folder / "model.pt"
