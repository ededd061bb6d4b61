"""Encoders from MONAI's FlexibleUNet registry, and ImageNet weights loaded from a local file.

MONAI downloads pretrained weights at construction and silently leaves the stem random when the input has other
than 3 channels. Nothing here downloads: :func:`load_encoder_weights` reads a file the user already has and adapts
the stem to the input channels, as segmentation_models_pytorch does.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

from nerveseg.utils.files import read_state_dict

__all__ = [
    "ENCODER_NAMES",
    "ENCODER_STRIDE",
    "build_encoder",
    "check_encoder_name",
    "check_input_size",
    "load_encoder_weights",
]

logger = logging.getLogger(__name__)

ENCODER_NAMES: tuple[str, ...] = tuple(FLEXUNET_BACKBONE.register_dict)
"""Every backbone MONAI's FlexibleUNet registers: efficientnet-b0..b8, efficientnet-l2, resnet10..resnet200."""

ENCODER_STRIDE = 32
"""The stride of the deepest feature map: networks without padding need inputs divisible by it."""

# MONAI nests EfficientNet blocks by stage (`_blocks.3.7.`); the released weights number them flatly (`_blocks.7.`).
_STAGE_INDEX = re.compile(r"^(_blocks)\.\d+(\.\d+\.)")
# Task-specific classifier layers keep their initialisation: ImageNet's 1000-class head never fits.
_CLASSIFIER_HEADS = ("_fc.", "fc.")


def check_encoder_name(backbone: str) -> None:
    """Raise a ``ValueError`` naming ``backbone`` and the valid choices unless MONAI registers it."""
    if backbone not in FLEXUNET_BACKBONE.register_dict:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(ENCODER_NAMES)}.")


def check_input_size(height: int, width: int, network: str, stride: int = ENCODER_STRIDE) -> None:
    """Raise a ``ValueError`` naming the size and the fix unless both sides are multiples of ``stride``.

    Written for TorchScript, so that scripted networks keep the message.
    """
    if height % stride != 0 or width % stride != 0:
        up_h, up_w = (height + stride - 1) // stride * stride, (width + stride - 1) // stride * stride
        near_h = max(stride, (height + stride // 2) // stride * stride)
        near_w = max(stride, (width + stride // 2) // stride * stride)
        fix = f"pad to ({up_h}, {up_w}) (monai.transforms.DivisiblePad(k={stride}))"
        if (near_h, near_w) != (up_h, up_w):
            fix = f"{fix} or resize to ({near_h}, {near_w})"
        raise ValueError(f"{network} needs H and W divisible by {stride}, got ({height}, {width}); {fix}.")


def build_encoder(backbone: str, in_channels: int = 1) -> tuple[nn.Module, tuple[int, ...]]:
    """A randomly initialised 2D encoder and the channels of its five feature maps (strides 2, 4, 8, 16, 32).

    Unlike FlexibleUNet's encoder, it holds only the layers the feature maps pass through.

    Args:
        backbone: one of :data:`ENCODER_NAMES`.
        in_channels: channels of the input image.
    """
    check_encoder_name(backbone)
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}.")
    entry = FLEXUNET_BACKBONE.register_dict[backbone]
    parameters = {**entry["parameter"], "spatial_dims": 2, "in_channels": in_channels, "pretrained": False}
    encoder = entry["type"](**parameters)
    # MONAI's EfficientNet encoder keeps the ImageNet classifier, which no feature map passes through: parameters
    # that never get a gradient cost memory and make DistributedDataParallel need find_unused_parameters.
    for unused in ("_conv_head", "_bn1", "_fc"):
        if hasattr(encoder, unused):
            delattr(encoder, unused)
    return encoder, tuple(entry["feature_channel"])


def load_encoder_weights(network: nn.Module, path: str | Path | None) -> nn.Module:
    """Load ImageNet classification weights from a local file into ``network``'s encoder, and return ``network``.

    The encoder is ``network.encoder`` when the network has one (FlexibleUNet and this package's networks), else the
    network itself (an EfficientNet classifier). The file is a state dict in the layout of the released weights:
    efficientnet-pytorch's for EfficientNets (``efficientnet-b1-f1951068.pth``), torchvision's for ResNets,
    optionally under a ``"state_dict"`` or ``"model"`` key. Every encoder tensor must be found with the same shape,
    except the stem, which is adapted when the input channels differ (summed over the three RGB channels for one
    input channel, repeated and rescaled otherwise), and the classifier head (``_fc``/``fc``), which keeps its
    initialisation.

    Args:
        network: the network to initialise in place.
        path: the weights file; ``None`` leaves the network unchanged.

    Raises:
        ValueError: the file is missing, unreadable, or does not fit the encoder (names the tensors).
    """
    if path is None:
        return network
    path = Path(path)
    weights = read_state_dict(path, what="Pretrained weights")

    encoder = getattr(network, "encoder", network)
    state = encoder.state_dict()
    missing, mismatched, fitted = [], [], 0
    for name, tensor in state.items():
        if name.startswith(_CLASSIFIER_HEADS):
            continue
        source = name if name in weights else _STAGE_INDEX.sub(r"\1\2", name)
        if source not in weights:
            if not name.endswith("num_batches_tracked"):
                missing.append(name)
            continue
        value = weights[source]
        if value.shape == tensor.shape:
            state[name], fitted = value.to(tensor.dtype), fitted + 1
        elif _is_stem_with_other_channels(value, tensor):
            state[name], fitted = _adapt_input_channels(value, tensor.shape[1]).to(tensor.dtype), fitted + 1
            logger.info(f"{name}: adapted {value.shape[1]} input channels of {path.name} to {tensor.shape[1]}.")
        else:
            mismatched.append(f"{name} {tuple(value.shape)} in the file vs {tuple(tensor.shape)}")
    if missing or mismatched:
        problems = [f"missing: {', '.join(missing[:5])}"] * bool(missing) + [f"shape: {'; '.join(mismatched[:5])}"] * (
            bool(mismatched)
        )
        hint = (
            "Are these weights for another backbone?"
            if hasattr(network, "encoder") or fitted
            else f"{type(network).__name__} has no pretrained encoder: stack configs/networks/flexible_unet.json "
            "(an EfficientNet encoder) to start from ImageNet weights."
        )
        raise ValueError(
            f"{path} does not fit the {type(encoder).__name__} encoder ({len(missing)} tensors missing, "
            f"{len(mismatched)} of another shape; {' | '.join(problems)}). {hint}"
        )
    encoder.load_state_dict(state)
    return network


def _is_stem_with_other_channels(value: torch.Tensor, tensor: torch.Tensor) -> bool:
    return value.ndim == 4 and value.shape[0] == tensor.shape[0] and value.shape[2:] == tensor.shape[2:]


def _adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a ``[out, c, kh, kw]`` stem to ``in_channels`` inputs so that a gray image repeated gives the same output."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)
