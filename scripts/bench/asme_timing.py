"""``nerveseg bench asme``: what the ASME ensemble costs over one view, with its 4 views in one batch or one by one."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import torch
from monai.inferers import SimpleInferer

from nerveseg.bundle.inferers import AcceleratedInferer, ASMEInferer, resolve_precision
from nerveseg.networks.profile import time_side_by_side
from nerveseg.scripts.bench.execution_paths import inference_settings
from nerveseg.scripts.bench.results import ms
from nerveseg.scripts.bench.run_builder import build_network, config_files

__all__ = ["asme_markdown", "measure_asme"]

VIEWS = ("identity", "lr", "ud", "both")


def measure_asme(bundle_root: str | os.PathLike, quick: bool, device: str = "cpu") -> dict[str, Any]:
    """The default network at 448x576, batch 1, on the default path: 4 views in one batch or one at a time vs 1."""
    device = torch.device(device)
    network = build_network(config_files(bundle_root, "configs/train.json")).to(device)
    settings = inference_settings(bundle_root)
    image = torch.rand(1, 1, 448, 576, device=device)
    inferers = {
        "1 view": SimpleInferer(),
        "4 views batched": ASMEInferer(views=VIEWS, max_batch=len(VIEWS)),
        "4 views sequential": ASMEInferer(views=VIEWS, max_batch=1),
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


def asme_markdown(result: dict[str, Any]) -> list[str]:
    """The three inferers' latency and their ratio to one view."""
    lines = [f"ASME on {result['device']}, default network at 448x576, batch 1, on the default path.", ""]
    lines += ["| inferer | ms per image: median [min, max] | x 1 view |", "|---|---:|---:|"]
    for name in ("1 view", "4 views batched", "4 views sequential"):
        lines.append(f"| {name} | {ms(result[name])} | {result[name]['median'] / result['1 view']['median']:.2f} |")
    return lines
