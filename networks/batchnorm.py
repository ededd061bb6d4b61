"""Batch-norm settings that MONAI's network constructors do not expose."""

from __future__ import annotations

from torch import nn

__all__ = ["BATCH_NORMS", "set_batchnorm_momentum"]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
"""PyTorch's batch-norm layers (the lazy ones become these once built)."""


def set_batchnorm_momentum(network: nn.Module, momentum: float) -> nn.Module:
    """Set the running-statistics momentum of every batch-norm layer of ``network`` and return it.

    MONAI's EfficientNet encoders keep TensorFlow's momentum (0.01 in PyTorch terms): the statistics used in
    ``eval()`` then trail the weights by about a hundred iterations, which leaves a short run's validation far
    below its training score. PyTorch's default, 0.1, follows the weights ten times faster.

    Args:
        network: any module; its ``BatchNorm1d/2d/3d`` (and ``SyncBatchNorm``) layers are changed in place.
        momentum: in (0, 1]; the weight of each new batch in the running mean and variance.
    """
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum must be in (0, 1], got {momentum}.")
    for module in network.modules():
        if isinstance(module, BATCH_NORMS):
            module.momentum = momentum
    return network
