"""``nerveseg bench asme``: what the ASME ensemble costs over one view, and what its early stop saves and costs.

:func:`measure_asme` times the default network (random weights) with 4 views in one batch, 4 views one at a time,
the early stop of configs/asme.json, and 1 view. How often the early stop fires, and what it costs in Dice, depends
on a trained network and real images: :func:`asme_dice_cost_curve` measures that over the stop agreement, for a
network and labelled images that a caller (the quality part or ``bench asme-curve``, after training) passes in.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer, SimpleInferer
from monai.utils import convert_to_tensor
from torch import nn

from nerveseg.bundle.inference.accelerated import AcceleratedInferer
from nerveseg.bundle.inference.inferers import ASMEInferer
from nerveseg.bundle.runs import build_network, config_files, read_config
from nerveseg.networks.profile import time_side_by_side
from nerveseg.scripts.bench.execution_paths import inference_settings
from nerveseg.scripts.bench.results import ms
from nerveseg.scripts.bench.scoring import dice_at_label_size

__all__ = [
    "CURVE_STOP_AGREEMENTS",
    "asme_curve_markdown",
    "asme_dice_cost_curve",
    "asme_markdown",
    "measure_asme",
    "shipped_asme",
]

VIEWS = ("identity", "lr", "ud", "both")

ADAPTIVE = "adaptive (asme.json)"
"""The name of the shipped ASME inferer, with its early stop, in :func:`measure_asme`'s result."""

INFERERS = ("1 view", "4 views batched", "4 views sequential", ADAPTIVE)

CURVE_STOP_AGREEMENTS: tuple[float | None, ...] = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, None)
"""The points of :func:`asme_dice_cost_curve`: ``stop_agreement`` values, ``None`` for full ASME (every view)."""


def shipped_asme(bundle_root: str | os.PathLike) -> ASMEInferer:
    """The ``view_inferer`` of configs/asme.json stacked on inference.json: ASME as shipped, early stop included."""
    return read_config(config_files(bundle_root, "configs/inference.json", "configs/asme.json")).get_parsed_content(
        "view_inferer"
    )


def measure_asme(bundle_root: str | os.PathLike, quick: bool, device: str = "cpu") -> dict[str, Any]:
    """The default network at 448x576, batch 1, on the default path: 4 views in one batch or one at a time, the
    shipped early stop, and 1 view.

    The image and the weights are random, so the early stop computes as many views as it happens to on them
    (``adaptive_views_used``): its time here is that of so many views, not its cost on real images.
    """
    device = torch.device(device)
    network = build_network(config_files(bundle_root, "configs/train.json")).to(device)
    settings = inference_settings(bundle_root)
    image = torch.rand(1, 1, 448, 576, device=device)
    adaptive = shipped_asme(bundle_root)
    inferers = {
        "1 view": SimpleInferer(),
        "4 views batched": ASMEInferer(views=VIEWS, max_batch=len(VIEWS)),
        "4 views sequential": ASMEInferer(views=VIEWS, max_batch=1),
        ADAPTIVE: adaptive,
    }
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    calls, converted = {}, AcceleratedInferer(**settings).openvino_network(network)  # shared: converted at first use
    for name, inner in inferers.items():
        inferer = AcceleratedInferer(inner, **settings, openvino=converted)
        calls[name] = lambda inferer=inferer: (inferer(image, network), synchronize())
    timings = time_side_by_side(calls, repeats=2 if quick else 7, warmup=1)
    single = timings["1 view"]["median"]
    result = {name: {k: timing[k] for k in ("median", "min", "max")} for name, timing in timings.items()}
    result.update(
        device=str(device),
        ratio_batched_vs_single=timings["4 views batched"]["median"] / single,
        ratio_sequential_vs_single=timings["4 views sequential"]["median"] / single,
        ratio_adaptive_vs_single=timings[ADAPTIVE]["median"] / single,
        adaptive_stop_agreement=adaptive.stop_agreement,
        adaptive_views_used=int(adaptive.last_scores["asme_views_used"][0]),
        path=_path_taken(settings, device, inferer, network),  # any of them: they share the network's runtime
    )
    print(json.dumps(result), flush=True)
    return result


def asme_markdown(result: dict[str, Any]) -> list[str]:
    """The inferers' latency and their ratio to one view."""
    lines = [f"ASME on {result['device']}, default network at 448x576, batch 1, on the default path.", ""]
    lines += ["| inferer | ms per image: median [min, max] | x 1 view |", "|---|---:|---:|"]
    for name in (n for n in INFERERS if n in result):
        lines.append(f"| {name} | {ms(result[name])} | {result[name]['median'] / result['1 view']['median']:.2f} |")
    if ADAPTIVE in result:
        lines += [
            "",
            f"The adaptive row (`asme_stop_agreement` {result['adaptive_stop_agreement']}) computed "
            f"{result['adaptive_views_used']} views on this random image with random weights; its cost on real "
            "images is in the Dice/cost curve.",
        ]
    return lines


def asme_dice_cost_curve(
    network: nn.Module,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    stop_agreements: Sequence[float | None] = CURVE_STOP_AGREEMENTS,
    threshold: float = 0.5,
    settings: Mapping[str, Any] | None = None,
    repeats: int = 3,
    views: Sequence[str] = VIEWS,
) -> dict[str, Any]:
    """Mean Dice, mean views used and time per image of ASME at each stop agreement, against one view.

    Each inferer runs every image alone (batch 1, as evaluate.json does) on the network's device; the inferers
    are timed in turn, round after round (:func:`~nerveseg.networks.profile.time_side_by_side`), and the median
    round counts. Dice is the challenge's (an empty prediction on an empty label scores 1) of ``sigmoid(logits) >
    threshold``, after resizing the probabilities bilinearly to the label's size when it differs, as evaluate.json
    inverts the resize; no other post-processing.

    Args:
        network: the trained network; it is put in eval mode.
        pairs: per labelled image, the ``[C, H, W]`` image at the network's input size and its binary
            ``[1, H', W']`` label (:func:`~.scoring.split_pairs`).
        stop_agreements: the :class:`~nerveseg.bundle.inference.inferers.ASMEInferer` ``stop_agreement`` of each point;
            ``None`` is full ASME.
        threshold: the probability threshold of the masks ASME compares and of the predictions scored.
        settings: ``backend``, ``precision`` and ``channels_last`` of
            :class:`~nerveseg.bundle.inference.accelerated.AcceleratedInferer`
            (:func:`~nerveseg.scripts.bench.execution_paths.inference_settings` gives the default path's); by
            default eager float32.
        repeats: timed rounds, each running every inferer over every image.
        views: the views of the ensemble, in the order they are computed.

    Returns:
        ``one_view`` (``mean_dice``, ``ms_per_image``) and ``points``, one per stop agreement: ``stop_agreement``,
        ``mean_dice``, ``dice_minus_full`` (against the ``None`` point, when there is one), ``mean_views_used``,
        ``ms_per_image``, ``x_one_view`` (time over one view's) and ``dice_per_image`` (in ``pairs``' order, for
        paired intervals); with ``images``, ``device`` and ``path``: the settings and what they resolved to.
    """
    if not pairs:
        raise ValueError("pairs is empty; pass the (image, label) pairs of a labelled split.")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    network = network.eval()
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    images = [convert_to_tensor(image, track_meta=False).to(device)[None] for image, _ in pairs]
    labels = [np.asarray(convert_to_tensor(label, track_meta=False).detach().cpu()) > 0 for _, label in pairs]
    inferers: dict[str, Inferer] = {"1 view": SimpleInferer()}
    for stop in stop_agreements:
        inferers[_point_name(stop)] = ASMEInferer(views=views, threshold=threshold, stop_agreement=stop)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    outputs: dict[str, list[torch.Tensor]] = {}
    views_used: dict[str, list[int]] = {}

    def run_all(name: str, inner: Inferer, inferer: Inferer) -> None:
        results, used = [], []
        for image in images:
            results.append(inferer(image, network))
            if isinstance(inner, ASMEInferer):
                used.append(int(inner.last_scores["asme_views_used"][0]))
        synchronize()
        outputs[name], views_used[name] = results, used

    converted = AcceleratedInferer(**settings).openvino_network(network) if settings is not None else None
    accelerated = [  # the inferers share the network's converted model, kept between repeats
        (name, inner, AcceleratedInferer(inner, **settings, openvino=converted) if settings is not None else inner)
        for name, inner in inferers.items()
    ]
    timings = time_side_by_side(
        {
            name: lambda name=name, inner=inner, inferer=inferer: run_all(name, inner, inferer)
            for name, inner, inferer in accelerated
        },
        repeats=repeats,
        warmup=1,
    )
    dice = {name: _dice_per_image(outputs[name], labels, threshold) for name in inferers}
    mean_dice = {name: statistics.mean(values) for name, values in dice.items()}
    single = timings["1 view"]["median"]
    full = mean_dice.get(_point_name(None))
    points = []
    for stop in stop_agreements:
        name = _point_name(stop)
        points.append(
            {
                "stop_agreement": stop,
                "mean_dice": mean_dice[name],
                "dice_minus_full": None if full is None else mean_dice[name] - full,
                "mean_views_used": statistics.mean(views_used[name]),
                "ms_per_image": 1e3 * timings[name]["median"] / len(images),
                "x_one_view": timings[name]["median"] / single,
                "dice_per_image": dice[name],
            }
        )
    return {
        "images": len(images),
        "device": str(device),
        "threshold": threshold,
        "views": list(views),
        "path": _path_taken(settings, device, accelerated[0][2], network),
        "repeats": repeats,
        "one_view": {"mean_dice": mean_dice["1 view"], "ms_per_image": 1e3 * single / len(images)},
        "points": points,
    }


def asme_curve_markdown(curve: dict[str, Any]) -> list[str]:
    """The Dice/cost curve as a table: one row per stop agreement, and one view."""
    path = curve["path"]
    ran_as = path.get("resolved")  # results before 0.17.0 name only the settings
    ran_as = ran_as or f"{path['precision']}{' channels-last' if path['channels_last'] else ''}"
    lines = [
        f"ASME's early stop on {curve['images']} images, batch 1, {curve['device']}, "
        f"{ran_as}; time is the median of {curve['repeats']} rounds.",
        "",
        "| stop agreement | mean Dice | Dice - full ASME | mean views used | ms per image | x 1 view |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for point in curve["points"]:
        name = "full (every view)" if point["stop_agreement"] is None else f"{point['stop_agreement']:g}"
        difference = "-" if point["dice_minus_full"] is None else f"{point['dice_minus_full']:+.4f}"
        lines.append(
            f"| {name} | {point['mean_dice']:.4f} | {difference} | {point['mean_views_used']:.2f} | "
            f"{point['ms_per_image']:.1f} | {point['x_one_view']:.2f} |"
        )
    one = curve["one_view"]
    lines.append(f"| 1 view | {one['mean_dice']:.4f} | | 1.00 | {one['ms_per_image']:.1f} | 1.00 |")
    return lines


def _path_taken(
    settings: Mapping[str, Any] | None, device: torch.device, inferer: Inferer, network: nn.Module
) -> dict[str, Any]:
    """``settings``, and under ``resolved`` what they ran as here, e.g. ``"openvino bfloat16"`` or ``"torch
    bfloat16 channels-last"`` (:meth:`~AcceleratedInferer.execution_path`, after the runs): ``auto`` names no
    machine's choice, a network OpenVINO refused ran on torch, and int8 without an accepted model ran in float32."""
    if settings is None or not isinstance(inferer, AcceleratedInferer):
        return {"precision": "float32", "channels_last": False, "resolved": "torch float32"}
    return {**settings, "resolved": inferer.execution_path(network, device)}


def _point_name(stop: float | None) -> str:
    return "full" if stop is None else f"stop {stop:g}"


def _dice_per_image(outputs: Sequence[torch.Tensor], labels: Sequence[np.ndarray], threshold: float) -> list[float]:
    probabilities = [torch.sigmoid(convert_to_tensor(logits, track_meta=False).float())[0, 0] for logits in outputs]
    return dice_at_label_size(probabilities, labels, threshold)
