"""Post-processing of predicted masks: the seeds' small-mask emptying, small-component removal and presence gate.

Each transform takes a channel-first ``[C, H, W]`` torch tensor, MetaTensor (metadata kept) or numpy array and
returns the same type, dtype and device; all are deterministic. An inference chain puts them in this order::

    Activationsd(sigmoid=True)          # logits -> probabilities
    PresenceGated(threshold=...)        # needs pred.meta["class_logits"], which Invertd drops
    Invertd(...)                        # back to the original image size
    AsDiscreted(threshold=0.5)          # probabilities -> 0/1 mask
    EmptySmallMaskd(min_area=...)       # nerve seed: areas in pixels of the original image
    RemoveSmallComponentsd(min_size=...)  # pneumothorax seed, same reason

Each one has an "off" value (``min_area=0``, ``min_size=0``, ``threshold=0``) that returns its input as is, so a
config can keep it in the chain and switch it off by an override.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from numbers import Real

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_data_type, convert_to_dst_type
from scipy import ndimage

from nerveseg.utils.class_logits import CLASS_LOGITS_KEY, class_logits_of

__all__ = [
    "EmptySmallMask",
    "EmptySmallMaskD",
    "EmptySmallMaskDict",
    "EmptySmallMaskd",
    "PresenceGate",
    "PresenceGateD",
    "PresenceGateDict",
    "PresenceGated",
    "RemoveSmallComponents",
    "RemoveSmallComponentsD",
    "RemoveSmallComponentsDict",
    "RemoveSmallComponentsd",
]


def _check_int(name: str, owner: str, value: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{owner} needs an integer {name} >= 0, got {value!r}; {hint}")


def _check_mask(owner: str, mask: NdarrayOrTensor) -> None:
    """Raise unless ``mask`` is ``[C, H, W]`` and has no values strictly between 0 and 1 (probabilities)."""
    if mask.ndim != 3:
        raise ValueError(
            f"{owner} needs a channel-first 2D mask [C, H, W], got shape {tuple(mask.shape)}; "
            "add a channel dimension (EnsureChannelFirstd) for [H, W] masks."
        )
    if bool(((mask > 0) & (mask < 1)).any()):
        raise ValueError(
            f"{owner} needs a thresholded mask, got values between 0 and 1 (probabilities?); "
            "put AsDiscreted(threshold=...) before it."
        )


class EmptySmallMask(Transform):
    """Empty each channel whose whole foreground area (pixels > 0, all components together) is ``<= min_area``.

    This is the nerve seed's minimum-area rule: a mask of 2500 px or less at 580x420 was replaced by an empty
    mask, as the smallest real nerve mask has 2,684 px. The area is counted per channel over the whole image,
    not per connected component; a mask of exactly ``min_area`` pixels is emptied, one of ``min_area + 1`` kept.

    Apply it after the resize is inverted (``Invertd``) and the probabilities are thresholded (``AsDiscreted``),
    so that ``min_area`` is in pixels of the original image and a pixel counts once. A mask still at the network's
    size (the validation during training) that carries its image's original size (a MetaTensor's
    ``meta["spatial_shape"]``, as MONAI's loaders set it) is held to ``min_area`` scaled by the ratio of the two
    areas, so the same setting means the same rule at either size.

    Args:
        min_area: largest foreground area, in pixels, of a mask that is emptied; ``0`` keeps every non-empty mask
            (off: the input is returned as is). The seed used 2500 at 580x420 (the smallest real nerve mask:
            2,684 px).

    Raises:
        ValueError: for a negative or non-integer ``min_area``, an input that is not ``[C, H, W]``, or one with
            values strictly between 0 and 1.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, min_area: int) -> None:
        _check_int("min_area", "EmptySmallMask", min_area, "use 0 to switch it off or e.g. 2500 (the nerve seed's).")
        self.min_area = int(min_area)

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return ``mask`` with each channel of area ``<= min_area`` set to 0; same type, shape and dtype."""
        if self.min_area == 0:
            return mask
        m = convert_data_type(mask, torch.Tensor)[0]
        _check_mask("EmptySmallMask", m)
        keep = ((m > 0).flatten(1).sum(dim=1) > self.min_area * _area_scale(mask)).view(-1, 1, 1)
        out = torch.where(keep, m, torch.zeros_like(m))
        return convert_to_dst_type(out, mask)[0]


def _area_scale(mask: NdarrayOrTensor) -> float:
    """The mask's area over its image's original area (``meta["spatial_shape"]``), 1 when either is unknown."""
    original = mask.meta.get("spatial_shape") if isinstance(mask, MetaTensor) else None
    if original is None or len(original) != mask.ndim - 1:
        return 1.0
    return float(np.prod(mask.shape[1:])) / float(np.prod([int(v) for v in original]))


class EmptySmallMaskd(MapTransform):
    """Dictionary form of :class:`EmptySmallMask`.

    Args:
        keys: the thresholded mask keys, e.g. ``"pred"``.
        min_area: largest foreground area, in pixels, of a mask that is emptied; 0 switches it off.
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = EmptySmallMask.backend

    def __init__(self, keys: KeysCollection, min_area: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.emptier = EmptySmallMask(min_area)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.emptier(d[key])
        return d


class RemoveSmallComponents(Transform):
    """Remove the connected components of ``min_size`` pixels or fewer, in each channel on its own.

    This is the pneumothorax seed's cleaning step (components of <= 2000 px at 1024x1024 removed). Components
    are found with ``scipy.ndimage.label`` on the pixels > 0; removed pixels become 0, kept ones keep their value.
    Like :class:`EmptySmallMask`, apply it after ``Invertd`` and ``AsDiscreted``, so sizes are in original pixels.

    Args:
        min_size: largest component size, in pixels, that is removed; ``0`` keeps everything (off: the input is
            returned as is). The seed used 2000 at 1024x1024.
        connectivity: 1 for 4-neighbourhood (edges only), 2 for 8-neighbourhood (diagonal neighbours join too).

    Raises:
        ValueError: for a negative or non-integer ``min_size``, a ``connectivity`` other than 1 or 2, an input that
            is not ``[C, H, W]``, or one with values strictly between 0 and 1.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, min_size: int, connectivity: int = 2) -> None:
        _check_int("min_size", "RemoveSmallComponents", min_size, "use 0 to switch it off or e.g. 2000.")
        if connectivity not in (1, 2) or isinstance(connectivity, bool):
            raise ValueError(
                f"RemoveSmallComponents needs connectivity 1 (4-neighbourhood) or 2 (8-neighbourhood), "
                f"got {connectivity!r}."
            )
        self.min_size = int(min_size)
        self.connectivity = int(connectivity)
        self.structure = ndimage.generate_binary_structure(2, self.connectivity)

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return ``mask`` without its small components; same type, shape, dtype and device."""
        if self.min_size == 0:
            return mask
        m = convert_data_type(mask, np.ndarray)[0]
        _check_mask("RemoveSmallComponents", m)
        keep = np.zeros(m.shape, dtype=bool)
        for c, channel in enumerate(m):
            labels, count = ndimage.label(channel > 0, structure=self.structure)
            if count:
                large = np.bincount(labels.ravel()) > self.min_size
                large[0] = False  # label 0 is the background
                keep[c] = large[labels]
        out = np.where(keep, m, np.zeros((), dtype=m.dtype))
        return convert_to_dst_type(out, mask)[0]


class RemoveSmallComponentsd(MapTransform):
    """Dictionary form of :class:`RemoveSmallComponents`.

    Args:
        keys: the thresholded mask keys, e.g. ``"pred"``.
        min_size: largest component size, in pixels, that is removed; 0 switches it off.
        connectivity: 1 for 4-neighbourhood, 2 for 8-neighbourhood.
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = RemoveSmallComponents.backend

    def __init__(
        self, keys: KeysCollection, min_size: int, connectivity: int = 2, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.remover = RemoveSmallComponents(min_size, connectivity=connectivity)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.remover(d[key])
        return d


class PresenceGate(Transform):
    """Empty a prediction whose presence probability ``sigmoid(class_logits[0])`` is ``<= threshold``.

    The presence logit is read from the prediction's own metadata (``pred.meta["class_logits"]``, see
    :mod:`nerveseg.utils.class_logits`), which MUNet and the presence-gated network attach; after MONAI decollates
    the batch each sample carries its own ``[K]`` logits, of which the first is the presence logit. This is
    NerveCeg's gate, with a tunable threshold in place of the classifier's argmax (threshold 0.5).

    Run it per sample, after ``Activationsd`` (zeroing raw logits would give probability 0.5, not an empty mask)
    and BEFORE ``Invertd``: ``Invertd`` replaces the prediction's metadata with the image's, dropping the logits.
    It works on probabilities and on binary masks alike: a gated prediction becomes all zeros.

    Args:
        threshold: keep the prediction when the presence probability is ``> threshold``, in ``[0, 1)``; ``0``
            keeps everything (off: the input is returned as is, and no class logits are needed).

    Raises:
        ValueError: for a threshold outside ``[0, 1)``, a prediction without class logits in its metadata, or
            logits that are not one sample's ``[K]`` vector.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, threshold: float) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0.0 <= threshold < 1.0:
            raise ValueError(
                f"PresenceGate needs 0 <= threshold < 1, got {threshold!r}; use 0 to switch it off or a value "
                "tuned on validation data (0.5 is the classifier's argmax)."
            )
        self.threshold = float(threshold)

    def presence_probability(self, pred: NdarrayOrTensor) -> float:
        """``sigmoid(class_logits[0])`` of one decollated prediction."""
        logits = class_logits_of(pred)
        if logits is None:
            raise ValueError(
                f"PresenceGate needs class logits in pred.meta[{CLASS_LOGITS_KEY!r}] (MUNet or the presence-gated "
                "network); this network gives none — remove the gate or set its threshold to 0"
            )
        logits = torch.as_tensor(logits)
        if logits.ndim != 1 or logits.numel() == 0:
            raise ValueError(
                f"PresenceGate needs one sample's class logits of shape [K], got shape {tuple(logits.shape)}; "
                "apply it in the post-processing, after the batch is decollated."
            )
        return float(torch.sigmoid(logits[0].float()))

    def __call__(self, pred: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return ``pred``, or zeros of its type, shape, dtype and metadata when the presence is too unlikely."""
        if self.threshold == 0.0 or self.presence_probability(pred) > self.threshold:
            return pred
        p = convert_data_type(pred, torch.Tensor)[0]
        return convert_to_dst_type(torch.zeros_like(p), pred)[0]


class PresenceGated(MapTransform):
    """Dictionary form of :class:`PresenceGate`; each key's logits come from that key's own metadata.

    Args:
        keys: the prediction keys, e.g. ``"pred"``.
        threshold: keep a prediction when its presence probability is ``> threshold``; 0 switches the gate off.
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = PresenceGate.backend

    def __init__(self, keys: KeysCollection, threshold: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.gate = PresenceGate(threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.gate(d[key])
        return d


EmptySmallMaskD = EmptySmallMaskDict = EmptySmallMaskd
RemoveSmallComponentsD = RemoveSmallComponentsDict = RemoveSmallComponentsd
PresenceGateD = PresenceGateDict = PresenceGated
