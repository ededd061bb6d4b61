"""``nerveseg bench peer``: our FlexibleUNet-b1 against segmentation_models_pytorch's ``Unet`` (EfficientNet-b1)."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from nerveseg.bundle.inference.accelerated import resolve_precision
from nerveseg.bundle.runs import build_network, config_files
from nerveseg.networks.profile import count_parameters, forward_flops, time_side_by_side
from nerveseg.scripts.bench.execution_paths import PATHS, path_call
from nerveseg.scripts.bench.league_peers import smp_unet_b1
from nerveseg.scripts.bench.network_table import FLEXIBLE_UNET_CONFIG
from nerveseg.scripts.bench.results import ms
from nerveseg.utils.errors import UserInputError

__all__ = ["measure_peer", "peer_markdown"]


def measure_peer(bundle_root: str | os.PathLike, default_path: str, quick: bool) -> dict[str, Any]:
    """smp ``Unet(efficientnet-b1)`` against our FlexibleUNet-b1 (configs/networks/flexible_unet.json, the same
    encoder), interleaved, same input, at 448x576 batch 1.

    Both run on every torch path a user of smp could pick here (eager and channels-last float32, and bfloat16
    where the CPU computes it natively) and on ``default_path``; ``peer_ratio`` is ours on the default path over
    smp on its fastest torch path. Without segmentation_models_pytorch the result says why it skipped.
    """
    torch.manual_seed(0)
    try:
        theirs = smp_unet_b1().eval()
    except UserInputError as error:
        print(f"peer skipped: {error}", flush=True)
        return {"skipped": str(error)}
    ours = build_network(config_files(bundle_root, "configs/train.json", FLEXIBLE_UNET_CONFIG))
    image = torch.rand(1, 1, 448, 576)
    native_bf16 = resolve_precision("auto", "cpu") == torch.bfloat16
    smp_paths = [
        name
        for name, path in PATHS.items()
        if path["backend"] == "torch" and (native_bf16 or path["precision"] == "float32")
    ]
    calls = {}
    for path in dict.fromkeys([*smp_paths, default_path]):
        calls[f"ours {path}"] = path_call(ours, image, path)
        calls[f"smp {path}"] = path_call(theirs, image, path)
    timings = time_side_by_side(calls, repeats=2 if quick else 7, warmup=1)
    best_format = min(smp_paths, key=lambda p: timings[f"smp {p}"]["median"])
    result = {name: {k: timing[k] for k in ("median", "min", "max")} for name, timing in timings.items()}
    result.update(
        smp_fastest_path=best_format,
        peer_ratio=timings[f"ours {default_path}"]["median"] / timings[f"smp {best_format}"]["median"],
        peer_ratio_same_path=timings[f"ours {default_path}"]["median"] / timings[f"smp {default_path}"]["median"],
        peer_ratio_eager=timings["ours eager fp32"]["median"] / timings["smp eager fp32"]["median"],
        parameters={"ours": count_parameters(ours), "smp": count_parameters(theirs)},
        gflops={"ours": forward_flops(ours, image.shape) / 1e9, "smp": forward_flops(theirs, image.shape) / 1e9},
    )
    print(json.dumps(result), flush=True)
    return result


def peer_markdown(result: dict[str, Any]) -> list[str]:
    """Both networks' latency per path, their size and cost, and the same-path ratio."""
    lines = ["Peer: smp Unet(efficientnet-b1) and our FlexibleUNet-b1 at 448x576, batch 1, interleaved.", ""]
    lines += ["| path | ours, ms: median [min, max] | smp, ms |", "|---|---:|---:|"]
    for path in dict.fromkeys(k.split(" ", 1)[1] for k in result if k.startswith("ours ")):
        lines.append(f"| {path} | {ms(result['ours ' + path])} | {ms(result['smp ' + path])} |")
    lines += [
        "",
        f"Parameters: ours {result['parameters']['ours'] / 1e6:.2f} M, smp {result['parameters']['smp'] / 1e6:.2f} M. "
        f"GFLOPs: ours {result['gflops']['ours']:.1f}, smp {result['gflops']['smp']:.1f}. smp's fastest torch "
        f"path: {result['smp_fastest_path']}; ours on the default path over it: {result['peer_ratio']:.3f}. "
        f"Ours on the default path over smp on the same path: {result['peer_ratio_same_path']:.3f}.",
    ]
    return lines
