"""MUNet: a U-Net decoder with a mask head at every scale, area-weighted mask fusion and a presence classifier.

From Zhang, Cheng and Gan, "MUNet: A Multi-scale U-Net Framework for Medical Image Segmentation"; the backbone is
any of MONAI's registered encoders.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.networks.blocks import Convolution
from torch import nn

from nerveseg.networks.encoders import build_encoder, check_input_size
from nerveseg.utils.class_logits import with_class_logits

__all__ = ["DEFAULT_DECODER_CHANNELS", "MUNet", "fuse_branches"]

DEFAULT_DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32)
"""Output channels of the decoder steps D4, D3, D2, D1 (strides 16, 8, 4, 2) when none are given."""


def fuse_branches(branch_logits: Sequence[torch.Tensor], eps: float = 1e-6) -> torch.Tensor:
    """Fuse mask logits of several branches with the paper's area weights (eq. 1-2), normalised.

    Per sample and channel, branch ``k`` with probabilities ``p_k = sigmoid(z_k)`` gets the weight
    ``alpha_k = 1 - A_k / (H * W)``, ``A_k = sum(p_k)`` its soft area, and the fused probability is
    ``sum_k w_k p_k`` with ``w_k = alpha_k / sum_j alpha_j``.

    Args:
        branch_logits: logits of equal shape ``[B, C, H, W]``, one tensor per branch.
        eps: added to every ``alpha_k`` (all-foreground branches then average uniformly) and the logit clamp.

    Returns:
        fused logits ``[B, C, H, W]``, ``logit(sum_k w_k p_k)`` clamped to ``[logit(eps), logit(1 - eps)]``.
    """
    if len(branch_logits) == 0:
        raise ValueError("fuse_branches needs at least one branch, got none.")
    # float32 whatever the autocast dtype: float16 rounds 1 - 1e-6 to 1, whose logit is infinite.
    probabilities = torch.stack([z.float() for z in branch_logits]).sigmoid()  # [K, B, C, H, W]
    alphas = 1.0 - probabilities.mean(dim=(-2, -1), keepdim=True) + eps  # mean == A_k / (H * W)
    weights = alphas / alphas.sum(dim=0, keepdim=True)
    fused = (weights * probabilities).sum(dim=0)
    return torch.logit(fused, eps=eps).to(branch_logits[0].dtype)


class _DecoderStep(nn.Module):
    """Upsample x2, concatenate the encoder map of that scale, then three conv3x3-BatchNorm-LeakyReLU (DBL)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, negative_slope: float) -> None:
        super().__init__()
        act = ("leakyrelu", {"negative_slope": negative_slope, "inplace": True})
        widths = (in_channels + skip_channels, out_channels, out_channels, out_channels)
        self.blocks = nn.Sequential(
            *(
                Convolution(2, c_in, c_out, kernel_size=3, act=act, norm="batch", bias=False)
                for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
            )
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.blocks(torch.cat([x, skip], dim=1))


class MUNet(nn.Module):
    """MUNet (Zhang, Cheng and Gan): a mask at each decoder scale, fused by area weights, and a presence classifier.

    A MONAI encoder (:func:`~nerveseg.networks.encoders.build_encoder`) gives C1..C5 at strides 2..32. Each
    decoder step upsamples the deeper map x2 (nearest), concatenates the encoder map of that scale and applies
    three DBL blocks (conv3x3-BatchNorm-LeakyReLU; the first maps the concatenation to the step's width, the other
    two keep it): D4 = step(C5, C4), D3 = step(D4, C3), D2 = step(D3, C2), D1 = step(D2, C1). A 1x1 convolution on
    each of D1..D4 gives a branch's mask logits, upsampled bilinearly (``align_corners=False``) to the input size.

    Fusion (paper eq. 1-2, :func:`fuse_branches`): ``A_k`` is the SOFT area of branch ``k`` (sum of its sigmoid
    probabilities over the image, per sample and channel; differentiable, no threshold), ``alpha_k = 1 - A_k/(WH)``
    and the weights are normalised, ``w_k = alpha_k / sum_j alpha_j``, so that the fused mask stays a probability.
    The fused logits are ``torch.logit(sum_k w_k * sigmoid(z_k), eps=1e-6)``. Nerves cover at most ~7% of an
    ultrasound frame, so ``alpha_k`` lies in [0.93, 1] and the fusion is close to a plain average of the branches.

    The classification head (global average pooling of C5, dropout, linear) predicts ``num_classes`` logits; with
    the default 1, whether the structure is present in the image.

    Args:
        in_channels: channels of the input image.
        out_channels: mask channels (sigmoid, one per structure).
        num_classes: classification logits; :class:`~nerveseg.bundle.losses.MUNetLoss` needs ``out_channels``.
        backbone: one of :data:`~nerveseg.networks.encoders.ENCODER_NAMES` (``resnet10``..``resnet200``,
            ``efficientnet-b0``..``b8``, ``efficientnet-l2``); weights are random, load them with
            :func:`~nerveseg.networks.encoders.load_encoder_weights` (it finds ``self.encoder``).
        decoder_channels: widths of D4, D3, D2, D1 (strides 16, 8, 4, 2). Default :data:`DEFAULT_DECODER_CHANNELS`,
            (256, 128, 64, 32) for every backbone: FlexibleUNet's default, and the paper's halving rule (each step
            has the channels of the encoder map of its scale) for ResNet18/34 at D4..D2, while ResNet50+ (C4 has
            1024 channels) stays light.
        negative_slope: slope of the LeakyReLU for negative inputs.
        dropout: dropout probability before the classification layer.

    Returns:
        ``forward(x)`` with ``x`` of shape ``[B, in_channels, H, W]``, H and W divisible by 32:

        - in ``train()`` mode, the list ``[fused, b1, b2, b3, b4, class_logits]``: ``fused`` is what eval mode
          returns; the branch logits ``b1..b4`` come finest first, from D1..D4 (strides 2, 4, 8, 16; the paper's
          B2..B5), each ``[B, out_channels, H, W]``; ``class_logits`` is ``[B, num_classes]``.
        - in ``eval()`` mode, one tensor, the fused logits ``[B, out_channels, H, W]``. When ``x`` is a
          ``MetaTensor`` (as in every MONAI workflow), the output is a ``MetaTensor`` with ``x``'s metadata and the
          detached classification logits under ``output.meta["class_logits"]`` (``[B, num_classes]``;
          ``decollate_batch`` gives each sample its own ``[num_classes]``). Inferers that build new tensors
          (sliding windows) drop it. For a plain tensor the output is a plain tensor (``torch.jit.trace`` works).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        num_classes: int = 1,
        backbone: str = "resnet34",
        decoder_channels: Sequence[int] | None = None,
        negative_slope: float = 0.01,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("num_classes", num_classes)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")
        decoder_channels = tuple(DEFAULT_DECODER_CHANNELS if decoder_channels is None else decoder_channels)
        if len(decoder_channels) != 4 or min(decoder_channels) < 1:
            raise ValueError(
                f"decoder_channels needs 4 positive widths (D4, D3, D2, D1 at strides 16, 8, 4, 2), got "
                f"{decoder_channels}; e.g. {DEFAULT_DECODER_CHANNELS}."
            )
        self.encoder, channels = build_encoder(backbone, in_channels)
        skips = channels[3::-1]  # C4, C3, C2, C1
        deeper = (channels[4], *decoder_channels[:-1])
        self.decoder = nn.ModuleList(
            _DecoderStep(c_in, c_skip, c_out, negative_slope)
            for c_in, c_skip, c_out in zip(deeper, skips, decoder_channels, strict=True)
        )
        # Finest first, like the branch outputs: heads[0] reads D1.
        self.heads = nn.ModuleList(nn.Conv2d(c, out_channels, kernel_size=1) for c in decoder_channels[::-1])
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[4], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not torch.jit.is_tracing():
            check_input_size(x.shape[-2], x.shape[-1], "MUNet")
        meta_input = x if isinstance(x, MetaTensor) else None
        if meta_input is not None:
            x = meta_input.as_tensor()  # plain tensors inside: no metadata copied at every layer
        c1, c2, c3, c4, c5 = self.encoder(x)
        decoded, features = [], c5
        for step, skip in zip(self.decoder, (c4, c3, c2, c1), strict=True):
            features = step(features, skip)
            decoded.append(features)
        branches = [
            F.interpolate(head(d), size=x.shape[-2:], mode="bilinear", align_corners=False)
            for head, d in zip(self.heads, decoded[::-1], strict=True)
        ]
        fused = fuse_branches(branches)
        if self.training:
            return [fused, *branches, self.classifier(c5)]
        return fused if meta_input is None else with_class_logits(fused, self.classifier(c5), meta_input)
