"""The training step's batch: what :class:`~monai.engines.SupervisedTrainer` hands the network and the loss."""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys

__all__ = ["TrainingBatch"]


class TrainingBatch(PrepareBatch):
    """A training batch's images and labels as plain tensors on ``device``, the images in channels-last order.

    The metadata MONAI's loaders attach is dropped before the network: neither the network nor the loss reads it,
    and a :class:`~monai.data.MetaTensor` pays for bookkeeping on every operation (9-13% of a CPU training step of
    FlexibleUNet-b1 at 96x128 to 128x160, batch 8). Channels-last (NHWC) order cut the same step by a further 19-21%
    on a 2-core AVX2 CPU; the network must be in channels-last order too (``initialise_network(channels_last=
    True)``), else each convolution converts. Figures: ``nerveseg bench training``.

    Args:
        channels_last: hand the network ``[B, C, H, W]`` images in channels-last memory order.
    """

    def __init__(self, channels_last: bool = True) -> None:
        self.channels_last = bool(channels_last)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(images, labels)`` of a collated dictionary batch; ``labels`` is ``None`` when the batch has none."""
        images = _plain(batchdata[CommonKeys.IMAGE]).to(device=device, non_blocking=non_blocking, **kwargs)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batchdata.get(CommonKeys.LABEL)
        if isinstance(labels, torch.Tensor):
            labels = _plain(labels).to(device=device, non_blocking=non_blocking, **kwargs)
        return images, labels


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x
