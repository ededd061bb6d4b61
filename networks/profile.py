"""What a network costs: parameters, forward FLOPs and forward latency, measured the same way for every network."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "forward_flops", "forward_latency"]


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
    runs = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            network(image)
            if i >= warmup:
                runs.append(time.perf_counter() - start)
    return {"median": statistics.median(runs), "runs": runs}
