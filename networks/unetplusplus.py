"""UNet++ in two forms: MONAI's nested one with the bundle's output convention, and the pneumothorax seed's simpler one.

:class:`BasicUNetPlusPlus` is MONAI's network with its outputs selected and reordered; :class:`EfficientUNetPlusPlus`
is an EfficientNet encoder with a residual decoder whose levels also receive every deeper decoder level's output.

Both follow the bundle's convention: in ``eval()`` a network returns one ``[B, out_channels, H, W]`` tensor; in
training a network with auxiliary outputs returns a list whose first element is what ``eval()`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from monai.networks.layers.factories import Conv
from monai.networks.nets import BasicUNetPlusPlus as _MonaiBasicUNetPlusPlus
from torch import nn

from nerveseg.networks.encoders import build_encoder, check_input_size

__all__ = ["BasicUNetPlusPlus", "EfficientUNetPlusPlus"]


class BasicUNetPlusPlus(_MonaiBasicUNetPlusPlus):
    """MONAI's UNet++ (nested grid of nodes X^{i,j}) that returns one tensor in ``eval()``.

    MONAI returns a list in every mode, final output last. Here:

    - ``eval()``, or ``deep_supervision=False``: the final output ``X^{0,4}`` as one tensor.
    - training with ``deep_supervision=True``: ``[X^{0,4}, X^{0,3}, X^{0,2}, X^{0,1}]``, final first, all at the
      input resolution; the order :class:`monai.losses.DeepSupervisionLoss` expects (it weights the first most).

    The weights and their names are MONAI's, so a MONAI checkpoint loads unchanged.

    Args:
        spatial_dims: 2 for images, 3 for volumes (MONAI's default is 3; this bundle's is 2).
        in_channels: channels of the input.
        out_channels: channels of the logits (MONAI's default is 2; this bundle's is 1, for a sigmoid).
        features: six channel numbers: the five encoder levels, then the last up-sampling.
        deep_supervision: add the outputs of the shallower nested decoders in training.
        **kwargs: the rest of MONAI's arguments (``act``, ``norm``, ``bias``, ``dropout``, ``upsample``).

    Shapes:
        input ``[B, in_channels, H, W]`` with H and W divisible by 16; output ``[B, out_channels, H, W]`` (or a list
        of four such in training with deep supervision).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        deep_supervision: bool = False,
        **kwargs: Any,
    ) -> None:
        _check_channels(in_channels, out_channels)
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            features=features,
            deep_supervision=deep_supervision,
            **kwargs,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        """Logits ``[B, out_channels, H, W]``, or in training with deep supervision a list of four, final first."""
        outputs = super().forward(x)
        if self.training and self.deep_supervision:
            return outputs[::-1]
        return outputs[-1]


class EfficientUNetPlusPlus(nn.Module):
    """The pneumothorax seed's simplified UNet++: an EfficientNet encoder and a residual decoder with dense skips.

    Unlike :class:`BasicUNetPlusPlus`, there is no nested grid of intermediate nodes X^{i,j} between encoder and
    decoder: the decoder is a plain chain of five levels, and the UNet++ idea survives only inside it, as each decoder
    level's output being up-sampled and concatenated into every shallower level. Each level is a residual block
    (conv-BN-LeakyReLU-conv-BN plus a projected shortcut, then LeakyReLU) instead of a plain two-conv block.

    Decoder level ``i`` (strides 16, 8, 4, 2, 1) takes the concatenation of: the previous level's output (the
    encoder's deepest feature for level 0) up-sampled 2x, the encoder feature at its stride (none at stride 1), and
    the outputs of all levels before the previous one, up-sampled to its stride (nearest neighbour throughout). The
    dense inputs carry decoder channels, so their cost is set by ``decoder_channels``, not by the backbone. A 1x1
    convolution maps the last level to logits.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the logits.
        backbone: any name in :data:`nerveseg.networks.encoders.ENCODER_NAMES`; the seed used ``efficientnet-b4``.
            The encoder starts random: load ImageNet weights with
            :func:`nerveseg.networks.encoders.load_encoder_weights`, which finds it as ``network.encoder``.
        decoder_channels: output channels of the five decoder levels, deepest first.
        negative_slope: of the decoder's LeakyReLU (MONAI's default, 0.01).
        dropout: dropout probability after each decoder convolution.

    Shapes:
        input ``[B, in_channels, H, W]`` with H and W divisible by 32; output ``[B, out_channels, H, W]`` in both
        training and ``eval()``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        backbone: str = "efficientnet-b4",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        negative_slope: float = 0.01,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_channels(in_channels, out_channels)
        decoder_channels = tuple(decoder_channels)
        if len(decoder_channels) != 5 or min(decoder_channels) < 1:
            raise ValueError(
                f"decoder_channels must be five positive integers, one per decoder level (strides 16, 8, 4, 2, 1), "
                f"got {decoder_channels}; e.g. (256, 128, 64, 32, 16)."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")

        self.encoder, encoder_channels = build_encoder(backbone, in_channels)
        skip_channels = tuple(encoder_channels[-2::-1]) + (0,)  # strides 16, 8, 4, 2, then none at stride 1
        act = ("leakyrelu", {"inplace": True, "negative_slope": negative_slope})
        blocks = []
        previous = encoder_channels[-1]
        for level, channels in enumerate(decoder_channels):
            dense = sum(decoder_channels[: max(level - 1, 0)])
            blocks.append(
                UnetResBlock(
                    spatial_dims=2,
                    in_channels=previous + skip_channels[level] + dense,
                    out_channels=channels,
                    kernel_size=3,
                    stride=1,
                    norm_name="batch",
                    act_name=act,
                    dropout=dropout or None,  # None: no Dropout(p=0) layers in the module tree
                )
            )
            previous = channels
        self.decoder = nn.ModuleList(blocks)
        self.head = Conv["conv", 2](decoder_channels[-1], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, out_channels, H, W]`` for an input ``[B, in_channels, H, W]`` with H, W divisible by 32."""
        if not torch.jit.is_tracing():  # a traced size check would become a constant (and warn)
            check_input_size(x.shape[-2], x.shape[-1], "EfficientUNetPlusPlus")
        features = self.encoder(x)
        skips = features[-2::-1]
        y = features[-1]
        outputs: list[torch.Tensor] = []
        for level, block in enumerate(self.decoder):
            inputs = [F.interpolate(y, scale_factor=2.0, mode="nearest")]
            if level < len(skips):
                inputs.append(skips[level])
            for deeper in range(level - 1):
                inputs.append(F.interpolate(outputs[deeper], scale_factor=float(2 ** (level - deeper)), mode="nearest"))
            y = block(torch.cat(inputs, dim=1))
            outputs.append(y)
        return self.head(y)


def _check_channels(in_channels: int, out_channels: int) -> None:
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1 (1 for a grayscale image), got {in_channels}.")
    if out_channels < 1:
        raise ValueError(f"out_channels must be at least 1 (1 for a binary mask with sigmoid), got {out_channels}.")
