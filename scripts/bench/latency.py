"""``nerveseg bench latency``: forward time per image of every network config on every execution path.

Each network is built from the bundle's configs (:func:`.network_table.network_variants`) with random weights, and
timed at each size and batch on every path of :data:`execution_paths.PATHS` that runs here (OpenVINO where it is
installed), plus ``torch.compile`` for the default network and ONNX Runtime, all paths of one setting interleaved
so that they share the machine's state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nerveseg.bundle.inference.accelerated import resolve_precision
from nerveseg.bundle.inference.backends import BackendUnavailableError
from nerveseg.bundle.inference.openvino_models import openvino_supports
from nerveseg.bundle.runs import build_network
from nerveseg.networks.profile import time_side_by_side
from nerveseg.scripts.bench.execution_paths import (
    PATHS,
    compiled_call,
    onnx_session,
    path_call,
)
from nerveseg.scripts.bench.machine import unimportable
from nerveseg.scripts.bench.network_table import DEFAULT_NETWORK, network_variants
from nerveseg.scripts.bench.results import ms

__all__ = ["fast_vs_eager_ratio", "latency_markdown", "measure_latency", "timed_paths"]


def measure_latency(bundle_root: str | os.PathLike, folder: Path, quick: bool) -> list[dict[str, Any]]:
    """Per-image forward latency of every network config on every path, all paths of a setting interleaved.

    Each row also has ``max_abs_diff``, the largest difference of the path's logits from eager float32 on the
    same random input: what the path costs in accuracy before any threshold. An OpenVINO row of a network and size
    seen first also has ``convert_s``, its first call (conversion and compilation); a network OpenVINO cannot
    serve (class logits) has no OpenVINO rows.
    """
    variants = [v for v in network_variants(bundle_root, backbones=("efficientnet-b1",)) if "classifier" not in v[0]]
    paths = timed_paths(quick)
    settings = [((448, 576), 1)] if quick else [((448, 576), 1), ((448, 576), 8), ((256, 256), 1), ((256, 256), 8)]
    onnx_missing = None if quick else unimportable("onnxruntime")
    if onnx_missing:
        print(f"ONNX Runtime path skipped: {onnx_missing}", flush=True)
    rows = []
    for name, files, overrides in variants[:1] if quick else variants:
        network = build_network(files, overrides)
        sessions: dict[tuple[int, int], tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {}
        converted: set[tuple[str, tuple[int, int]]] = set()
        for size, batch in settings:
            images = torch.rand(batch, 1, *size)
            calls = {path: path_call(network, images, path) for path in paths}
            seconds = {}
            if not quick and not onnx_missing:
                if size not in sessions:
                    sessions[size] = onnx_session(files, overrides, network, size, folder)
                run, seconds["export_s"] = sessions[size]
                calls["onnxruntime fp32"] = lambda run=run, images=images: run(images)
            if not quick and name == DEFAULT_NETWORK and size == (448, 576):
                calls["torch.compile channels_last + bf16"], seconds["compile_s"] = compiled_call(network, images)
            with torch.inference_mode():
                reference = network(images)
                differences = {}
                for path, call in list(calls.items()):
                    start = time.perf_counter()
                    try:
                        differences[path] = (call() - reference).abs().max().item()
                    except BackendUnavailableError as error:
                        print(f"{name}: {path} skipped: {error}", flush=True)
                        del calls[path]
                        continue
                    if path.startswith("openvino") and (path, size) not in converted:
                        converted.add((path, size))
                        seconds[path] = time.perf_counter() - start
            repeats = 2 if quick else (5 if batch == 1 else 3)
            for path, timing in time_side_by_side(calls, repeats=repeats, warmup=1).items():
                row = {"network": name, "size": list(size), "batch": batch, "path": path, "repeats": repeats}
                row.update({k: timing[k] / batch for k in ("median", "min", "max")})
                row["max_abs_diff"] = differences[path]
                if path.startswith("torch.compile"):
                    row["compile_s"] = seconds["compile_s"]
                if path.startswith("onnxruntime"):
                    row["export_s"] = seconds["export_s"]
                if path in seconds:
                    row["convert_s"] = seconds[path]
                rows.append(row)
                print(
                    f"{name:<36}{str(size):>12}{batch:>3}  {path:<36}{row['median']:>9.4f} s/image "
                    f"[{row['min']:.4f}, {row['max']:.4f}]  max |diff| {row['max_abs_diff']:.2e}",
                    flush=True,
                )
    return rows


def timed_paths(quick: bool) -> dict[str, dict[str, Any]]:
    """:data:`PATHS` that run here: OpenVINO's where it is installed, its bfloat16 where the CPU computes it; the
    torch bfloat16 ones not in quick mode on a CPU that only emulates bfloat16.

    Emulated, a bfloat16 forward takes tens of times as long as a float32 one (23 s against 0.6 s per 448x576
    image on a 2-core CPU without AVX512-BF16), most of a quick run; ``inference_precision: auto`` never selects
    it there, so the quick run's headline numbers do not need it. OpenVINO does not emulate bfloat16 at all.
    """
    paths = dict(PATHS)
    openvino_missing = unimportable("openvino")
    if openvino_missing:
        print(f"OpenVINO paths skipped: {openvino_missing}", flush=True)
    if openvino_missing or not openvino_supports(torch.bfloat16):
        paths.pop("openvino bf16")
    if openvino_missing:
        paths.pop("openvino fp32")
    if quick and resolve_precision("auto", "cpu") != torch.bfloat16:
        print("Quick mode: bfloat16 paths skipped, this CPU emulates bfloat16.", flush=True)
        paths = {name: path for name, path in paths.items() if path["precision"] != "bfloat16"}
    return paths


def fast_vs_eager_ratio(rows: list[dict[str, Any]], path: str) -> float:
    """The default network's median latency on ``path`` over eager float32, at 448x576 and batch 1."""

    def median(p: str) -> float:
        return next(
            r["median"]
            for r in rows
            if (r["network"], tuple(r["size"]), r["batch"], r["path"]) == (DEFAULT_NETWORK, (448, 576), 1, p)
        )

    return median(path) / median("eager fp32")


def latency_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The latency table (ms per image), the logit differences from eager float32, compile and export times."""
    paths = list(dict.fromkeys(r["path"] for r in rows))
    cells = {(r["network"], tuple(r["size"]), r["batch"], r["path"]): ms(r) for r in rows}
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
    converted = [r["convert_s"] for r in rows if "convert_s" in r]
    if converted:
        span = f"{min(converted):.1f}-{max(converted):.1f} s"
        lines += ["", f"OpenVINO's first call (convert_model and compile, in memory): {span} per network and size."]
    return lines
