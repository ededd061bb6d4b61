"""BasicUNet and FlexibleUNet with deep supervision: a mask head on each of the decoder's coarser scales, as
nnU-Net trains.

In training each head's logits join the loss (MONAI's ``DeepSupervisionLoss`` resizes the label to each), which
gives the decoder's early stages a gradient of their own. In ``eval()`` the network computes what MONAI's
network computes: one ``[B, C, H, W]`` tensor of the full-size head, so inferers, export and MONAI Label work
unchanged. Their checkpoints hold the heads too (``supervision_heads.*``): load them into the same class, as the
bundle's configs do, or into MONAI's plain network with ``strict=False``.
"""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet, FlexibleUNet
from torch import nn

__all__ = ["DeepSupervisedBasicUNet", "DeepSupervisedFlexibleUNet"]


class DeepSupervisedFlexibleUNet(FlexibleUNet):
    """MONAI's ``FlexibleUNet`` whose ``supervision_levels`` coarser decoder outputs (strides 2, 4, 8, ...) each get a
    1x1 convolution to ``out_channels`` logits.

    In training ``forward`` returns ``(full, half, quarter, ...)``: the full-size logits first, then the heads from
    fine to coarse, the order ``DeepSupervisionLoss`` weights by ``1, 1/2, 1/4, ...``; in ``eval()`` the full-size
    logits only. The heads add ``out_channels`` x (the decoder's channels + 1) parameters each.

    Args:
        supervision_levels: heads on coarser scales, at least 1 and fewer than the decoder's stages.
        args, kwargs: ``FlexibleUNet``'s (``in_channels``, ``out_channels``, ``backbone``, ...).
    """

    def __init__(self, *args, supervision_levels: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_levels(supervision_levels, len(self.decoder.blocks))
        out_channels = self.segmentation_head[0].out_channels
        spatial_dims = len(self.segmentation_head[0].kernel_size)
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        finer_first = list(self.decoder.blocks)[-2 : -2 - supervision_levels : -1]
        self.supervision_heads = nn.ModuleList(
            conv(block.convs.conv_1.conv.out_channels, out_channels, kernel_size=1) for block in finer_first
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if not self.training:
            return super().forward(inputs)
        features = self.encoder(inputs)
        skips, x = features[:-1][::-1], features[-1]  # as UNetDecoder.forward walks them
        stage_outputs = []
        for index, block in enumerate(self.decoder.blocks):
            x = block(x, skips[index] if index < self.skip_connect else None)
            stage_outputs.append(x)
        coarser = stage_outputs[-2 : -2 - len(self.supervision_heads) : -1]  # strides 2, 4, 8, ...
        heads = tuple(head(output) for head, output in zip(self.supervision_heads, coarser, strict=True))
        return (self.segmentation_head(stage_outputs[-1]), *heads)


class DeepSupervisedBasicUNet(BasicUNet):
    """MONAI's ``BasicUNet`` whose ``supervision_levels`` coarser decoder outputs (``upcat_2``, ``upcat_3``,
    ``upcat_4``: strides 2, 4, 8) each get a 1x1 convolution to ``out_channels`` logits.

    Outputs as :class:`DeepSupervisedFlexibleUNet`'s: ``(full, half, quarter, ...)`` in training, the full-size
    logits in ``eval()``.

    Args:
        supervision_levels: heads on coarser scales, 1 to 3.
        args, kwargs: ``BasicUNet``'s (``spatial_dims``, ``features``, ``norm``, ...).
    """

    def __init__(self, *args, supervision_levels: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_levels(supervision_levels, 4)
        conv = type(self.final_conv)
        finer_first = [self.upcat_2, self.upcat_3, self.upcat_4][:supervision_levels]
        self.supervision_heads = nn.ModuleList(
            conv(block.convs.conv_1.conv.out_channels, self.final_conv.out_channels, kernel_size=1)
            for block in finer_first
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if not self.training:
            return super().forward(x)
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        u4 = self.upcat_4(self.down_4(x3), x3)
        u3 = self.upcat_3(u4, x2)
        u2 = self.upcat_2(u3, x1)
        coarser = [u2, u3, u4][: len(self.supervision_heads)]
        heads = tuple(head(output) for head, output in zip(self.supervision_heads, coarser, strict=True))
        return (self.final_conv(self.upcat_1(u2, x0)), *heads)


def _check_levels(supervision_levels: int, stages: int) -> None:
    if not 1 <= supervision_levels < stages:
        raise ValueError(
            f"supervision_levels must be between 1 and {stages - 1} (the decoder's stages but the last), "
            f"got {supervision_levels}."
        )
