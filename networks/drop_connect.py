"""Drop-connect of MONAI's EfficientNet encoders, which FlexibleUNet's constructor does not expose."""

from __future__ import annotations

from monai.networks.nets.efficientnet import EfficientNet, MBConvBlock
from torch import nn

from nerveseg.utils.errors import UserInputError

__all__ = ["set_drop_connect_rate"]


def set_drop_connect_rate(network: nn.Module, rate: float) -> nn.Module:
    """Set the drop-connect rate of every EfficientNet encoder in ``network`` and return it.

    MONAI builds each encoder with its backbone's rate (0.2 for every EfficientNet) shared out by depth: block ``i``
    of ``n`` drops with ``rate * i / n``. Short runs from scratch may learn faster with less; this sets that
    schedule for ``rate``, so it can be called again with another.

    Args:
        network: any module; its EfficientNet encoders are changed in place.
        rate: in [0, 1); 0 turns drop-connect off.
    """
    if not 0.0 <= rate < 1.0:
        raise UserInputError(f"drop_connect_rate is {rate}: it must be in [0, 1), or null for the backbone's own.")
    encoders = [m for m in network.modules() if isinstance(m, EfficientNet)]
    if not encoders:
        raise UserInputError(
            f"drop_connect_rate is {rate}, but {type(network).__name__} has no EfficientNet encoder; set "
            "drop_connect_rate to null, or stack configs/networks/flexible_unet.json."
        )
    for encoder in encoders:
        blocks = [m for m in encoder.modules() if isinstance(m, MBConvBlock)]
        for index, block in enumerate(blocks):
            block.drop_connect_rate = rate * index / len(blocks)
        encoder.drop_connect_rate = rate
    return network
