"""Erosion Mask Smoothing (EMS): soft segmentation targets that relax the loss inside an object.

The ultrasound-nerve seed proposes to "highlight the boundary loss and relax the internal loss" by
lowering the target inside each mask. With ``M`` a binary mask and ``E`` the mask eroded by a
square structuring element, the target is::

    1 - eps   on E          (the interior)
    1         on M \\ E      (the ring along the boundary)
    0         outside M

The paper names a 9x9 kernel; the seed's code eroded with a 9x9 kernel 3 times (the same as one
25x25 erosion, so the ring holds 60-70% of a typical nerve mask) and used ``eps = 12/255``
(interior 243/255, ring 255/255). Those are the defaults here.

The targets are soft (float32), so they suit losses that take probabilities as targets, such as
MONAI's ``DiceFocalLoss(sigmoid=True)``; a one-hot conversion (``.long()``) would turn the
interior into background. Apply the transform to the label after it has been resized with
nearest neighbour and made binary with ``AsDiscreted``. ``eps=0`` turns EMS off: the transform
then returns its input as is, which is how the bundle's configs keep it off by default.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends
from monai.utils.type_conversion import convert_data_type, convert_to_dst_type

__all__ = [
    "ErosionMaskSmoothing",
    "ErosionMaskSmoothingD",
    "ErosionMaskSmoothingDict",
    "ErosionMaskSmoothingd",
    "erode",
]

SEED_EPS = 12.0 / 255.0
"""The seed's interior reduction: interior target 243/255."""


def erode(mask: torch.Tensor, kernel_size: int, iterations: int = 1) -> torch.Tensor:
    """Binary erosion of each channel of a ``[C, H, W]`` float mask by a square structuring element.

    Pixels outside the image count as foreground (as in OpenCV's default border for erosion), so
    a mask that touches the image edge is not eroded from that edge.

    Args:
        mask: float tensor ``[C, H, W]`` with values 0 and 1.
        kernel_size: odd side of the square structuring element.
        iterations: how many times to erode; 0 returns the mask.

    Returns:
        the eroded mask, same shape, dtype and device as ``mask``.
    """
    pad = kernel_size // 2
    out = mask
    for _ in range(iterations):
        # min-pool as -max_pool(-x); padding with 1 makes the outside foreground.
        padded = F.pad(out, (pad, pad, pad, pad), mode="constant", value=1.0)
        out = -F.max_pool2d(-padded, kernel_size=kernel_size, stride=1)
    return out


class ErosionMaskSmoothing(Transform):
    """Soft target from a binary mask: ``1 - eps`` on the eroded interior, 1 on the boundary ring, 0 outside.

    Each channel of a channel-first ``[C, H, W]`` mask is eroded on its own by a square
    ``kernel_size`` x ``kernel_size`` structuring element, ``iterations`` times (erosion by ``k`` x ``k``
    repeated ``n`` times equals one erosion by ``n * (k - 1) + 1``). Pixels outside the image count
    as foreground, as in OpenCV's default border for erosion: a mask touching the image edge is
    eroded only from its edges inside the image.

    The output is float32, of the input's type (torch tensor, MetaTensor with its metadata kept, or
    numpy array), on the input's device. The transform is deterministic.

    Args:
        kernel_size: side of the square structuring element, odd and at least 1. The paper says 9x9.
        iterations: how many erosions, at least 0; 0 makes the whole mask interior (``1 - eps``).
            The seed's code used 3 (9x9 x 3, about a 25x25 erosion).
        eps: how much to lower the interior target, in ``[0, 1)``. The seed's code used 12/255
            (interior 243/255). ``eps=0`` switches EMS off: the input is returned as is (same object,
            no erosion, no check of its values); the bundle's configs use this to keep EMS off by default.

    Raises:
        ValueError: for an even or non-positive ``kernel_size``, a negative ``iterations``, an ``eps``
            outside ``[0, 1)``, an input that is not ``[C, H, W]``, or a mask with values other than 0 and 1.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, kernel_size: int = 9, iterations: int = 3, eps: float = SEED_EPS) -> None:
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"ErosionMaskSmoothing needs an odd integer kernel_size >= 1, got {kernel_size!r}; "
                "use e.g. 9 (the seed's kernel)."
            )
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(
                f"ErosionMaskSmoothing needs an integer iterations >= 0, got {iterations!r}; "
                "use 0 for no erosion or e.g. 3 (the seed's value)."
            )
        if not 0.0 <= eps < 1.0:
            raise ValueError(
                f"ErosionMaskSmoothing needs 0 <= eps < 1, got {eps!r}; use 0 to switch it off or e.g. 12/255 "
                "(the seed's value)."
            )
        self.kernel_size = kernel_size
        self.iterations = iterations
        self.eps = float(eps)

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return the soft target of ``mask``, channel-first ``[C, H, W]`` with values 0 and 1."""
        if self.eps == 0.0:
            return mask
        m = convert_data_type(mask, torch.Tensor, dtype=torch.float32)[0]
        if m.ndim != 3:
            raise ValueError(
                "ErosionMaskSmoothing needs a channel-first 2D mask [C, H, W], "
                f"got shape {tuple(m.shape)}; add a channel dimension (EnsureChannelFirstd) for [H, W] masks, "
                "3D volumes are not supported."
            )
        binary = (m == 0) | (m == 1)
        if not bool(binary.all()):
            values = torch.unique(m[~binary])[:5].tolist()
            raise ValueError(
                "ErosionMaskSmoothing needs a binary 0/1 mask (apply it after resizing with nearest neighbour "
                f"and AsDiscreted); got values {values} besides 0 and 1."
            )
        interior = erode(m, self.kernel_size, self.iterations) > 0
        # M - eps * E, with the interior value written once so it is exactly float32(1 - eps).
        out = torch.where(interior, torch.tensor(1.0 - self.eps, dtype=m.dtype, device=m.device), m)
        return convert_to_dst_type(out, mask, dtype=torch.float32)[0]


class ErosionMaskSmoothingd(MapTransform):
    """Dictionary form of :class:`ErosionMaskSmoothing`; the bundle applies it to the label only.

    Args:
        keys: the binary mask keys to replace by their soft targets.
        kernel_size: side of the square structuring element, odd and at least 1.
        iterations: how many erosions, at least 0.
        eps: how much to lower the interior target, in ``[0, 1)``; 0 switches EMS off.
        allow_missing_keys: do not raise when a key is absent.
    """

    backend = ErosionMaskSmoothing.backend

    def __init__(
        self,
        keys: KeysCollection,
        kernel_size: int = 9,
        iterations: int = 3,
        eps: float = SEED_EPS,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.smoother = ErosionMaskSmoothing(kernel_size=kernel_size, iterations=iterations, eps=eps)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.smoother(d[key])
        return d


ErosionMaskSmoothingD = ErosionMaskSmoothingDict = ErosionMaskSmoothingd
