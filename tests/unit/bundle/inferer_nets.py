"""Small networks and inputs the inferer tests share: random convolutions, a batch recorder, class logits."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from torch import nn

from nerveseg.utils.class_logits import with_class_logits

SCORE_DTYPES = {"asme_views_used": torch.int64}
"""The dtype of each ASME score in the metadata where it is not float32."""


def conv_net(seed: int = 0, out_channels: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with random (so not flip-symmetric) weights."""
    torch.manual_seed(seed)
    return nn.Conv2d(1, out_channels, 3, padding=1).requires_grad_(False)


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """Wraps a network and records the batch size of every forward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return self.net(x)


class WithClassLogits(nn.Module):
    """A conv net that also returns view-dependent ``[B, 2]`` class logits in the metadata, as MUNet does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = conv_net(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = x.as_tensor() if isinstance(x, MetaTensor) else x
        return with_class_logits(self.net(plain), plain[:, 0, 0, :2], x)
