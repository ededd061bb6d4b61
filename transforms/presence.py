"""Image-level presence targets from segmentation masks, for training a presence classifier."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

__all__ = ["MaskToPresence", "MaskToPresenceD", "MaskToPresenceDict", "MaskToPresenced"]


class MaskToPresence(Transform):
    """Map a ``[C, H, W]`` mask to a ``[C]`` float tensor: 1 where the channel has any foreground, else 0.

    Soft masks count as present wherever they exceed 0, so a smoothed target keeps its image-level label.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        mask = torch.as_tensor(mask)
        if mask.ndim < 2:
            raise ValueError(f"MaskToPresence needs a channel-first mask [C, H, W], got shape {tuple(mask.shape)}.")
        return (mask.flatten(1).amax(dim=1) > 0).float()


class MaskToPresenced(MapTransform):
    """Dictionary form of :class:`MaskToPresence`.

    Args:
        keys: the mask keys to replace by their presence targets.
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = MaskToPresence.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = MaskToPresence()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


MaskToPresenceD = MaskToPresenceDict = MaskToPresenced
