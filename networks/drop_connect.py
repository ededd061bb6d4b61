"""Drop-connect of MONAI's EfficientNet encoders, which FlexibleUNet's constructor does not expose."""

from __future__ import annotations

from monai.networks.nets.efficientnet import EfficientNet, MBConvBlock
from torch import nn

__all__ = ["set_drop_connect_rate"]


def set_drop_connect_rate(network: nn.Module, rate: float) -> nn.Module:
    """Set the drop-connect rate of every EfficientNet encoder in ``network`` and return it.

    MONAI builds each encoder with its backbone's rate (0.2 for b0 to b3) and gives each block a share of it that
    grows with depth. Short runs from scratch may learn faster with less: this scales every block's share to
    ``rate``, keeping MONAI's schedule.

    Args:
        network: any module; its EfficientNet encoders are changed in place.
        rate: in [0, 1); 0 turns drop-connect off.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_connect_rate must be in [0, 1), got {rate}.")
    encoders = [m for m in network.modules() if isinstance(m, EfficientNet)]
    if not encoders:
        raise ValueError(
            f"drop_connect_rate applies to EfficientNet encoders, and {type(network).__name__} has none; "
            "remove drop_connect_rate or use a FlexibleUNet with an efficientnet backbone."
        )
    for encoder in encoders:
        built_with = encoder.drop_connect_rate
        if not built_with:
            raise ValueError(
                f"{type(network).__name__}'s encoder has drop-connect off, so MONAI's per-block schedule is gone; "
                "build the network afresh to set drop_connect_rate."
            )
        for block in encoder.modules():
            if isinstance(block, MBConvBlock):
                block.drop_connect_rate = (block.drop_connect_rate or 0.0) * rate / built_with
        encoder.drop_connect_rate = rate
    return network
