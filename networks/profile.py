"""What a network costs: parameters, forward FLOPs and forward latency, measured the same way for every network."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "cpu_model", "forward_flops", "forward_latency", "time_side_by_side"]


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def forward_flops(network: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one eval-mode forward pass on a random input of ``input_shape`` (a multiply-add counts as 2).

    Counted by PyTorch's ``FlopCounterMode``, which covers convolutions and matrix products, the bulk of a CNN's
    work; element-wise operations (activations, normalisation) are not counted.
    """
    network.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.rand(*input_shape))
    return int(counter.get_total_flops())


def forward_latency(
    network: nn.Module, input_shape: Sequence[int], repeats: int = 5, warmup: int = 1
) -> dict[str, float | list[float]]:
    """Wall-clock seconds of eval-mode forward passes on the current device's CPU threads.

    Returns the ``median`` and every ``runs`` time, after ``warmup`` untimed passes (allocation, kernel selection).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    network.eval()
    image = torch.rand(*input_shape)
    timing = time_side_by_side({"forward": lambda: network(image)}, repeats=repeats, warmup=warmup)["forward"]
    return {"median": timing["median"], "runs": timing["runs"]}


def time_side_by_side(
    calls: Mapping[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> dict[str, dict[str, float | list[float]]]:
    """Wall-clock seconds of each call, in inference mode, the calls interleaved so they share the machine's state.

    Every call runs ``warmup`` untimed times first (allocation, kernel selection); then each round times every call
    once, in order, ``repeats`` rounds. Interleaving keeps a ratio between two calls fair when something else
    slows the machine for a while. Returns ``median``, ``min``, ``max`` and every ``runs`` time per call.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    runs: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():
            for _ in range(warmup):
                call()
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                runs[name].append(time.perf_counter() - start)
    return {name: {"median": statistics.median(r), "min": min(r), "max": max(r), "runs": r} for name, r in runs.items()}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else the architecture), for the record beside a timing."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()
