"""NerveCeg's two-stage model: an EfficientNet presence classifier gating a segmenter.

Most nerve frames hold no nerve, and an empty prediction on an empty frame scores 1: a classifier that says
"absent" with confidence saves more Dice than a segmenter's small false positives cost. The classifier is trained
on its own (``configs/presence_classifier.json``); :class:`PresenceGatedSegmenter` joins the two trained networks
into one network with one checkpoint (``nerveseg gate``); the gate itself is applied in post-processing
(``PresenceGated``), with a threshold that ``nerveseg tune`` picks on the validation split.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from efficientnet_pytorch import VALID_MODELS, EfficientNet
from torch import nn

from nerveseg.utils.class_logits import with_class_logits

__all__ = ["EMPTY_LOGIT", "PresenceGatedSegmenter", "gated_state_dict", "presence_classifier"]

EMPTY_LOGIT = -20.0
"""The mask logit of a gated-out image: sigmoid gives 2e-9, so every threshold empties the mask."""


def presence_classifier(
    backbone: str = "efficientnet-b4", in_channels: int = 1, dropout_rate: float | None = None
) -> EfficientNet:
    """An efficientnet-pytorch EfficientNet that returns one presence logit per image, ``[B, 1]``.

    Initialised at random (nothing is downloaded): pass a local ImageNet weights file through
    :func:`nerveseg.networks.encoders.load_encoder_weights` (the config's ``pretrained_path``) to start from it.

    Args:
        backbone: ``efficientnet-b0`` .. ``efficientnet-b8`` (NerveCeg used b4).
        in_channels: channels of the input image.
        dropout_rate: dropout before the final layer; ``None`` keeps the backbone's (0.4 for b4).
    """
    if backbone not in VALID_MODELS:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(VALID_MODELS)}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}.")
    overrides = {} if dropout_rate is None else {"dropout_rate": dropout_rate}
    network = EfficientNet.from_name(backbone, in_channels=in_channels, num_classes=1, **overrides)
    network.set_swish(memory_efficient=False)  # the memory-efficient swish is a custom autograd op: no export
    return network


class PresenceGatedSegmenter(nn.Module):
    """A segmenter whose mask is kept only for images where a classifier's presence probability exceeds a threshold.

    Meant for evaluation and inference; the two networks are trained separately. The output is the segmenter's
    ``[B, C, H, W]`` logits, replaced by :data:`EMPTY_LOGIT` for the images gated out, so every downstream step
    (thresholding, inversion of the resize, ensembling over flips) sees an ordinary mask network. The presence
    logits ride along as ``pred.meta["class_logits"]`` (``[B, 1]``; see :mod:`nerveseg.utils.class_logits`), which
    is how the evaluation report records the presence probability of each image for tuning the threshold.

    Args:
        segmenter: a network returning ``[B, C, H, W]`` mask logits in eval mode.
        classifier: a network returning ``[B, 1]`` presence logits.
        threshold: keep a mask when ``sigmoid(presence logit) > threshold``; 0 (the default) keeps every mask and
            leaves gating to the bundle's post-processing. Set it, to a value tuned on validation data, only to
            deploy the network without that post-processing.
    """

    def __init__(self, segmenter: nn.Module, classifier: nn.Module, threshold: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}; 0 keeps every mask.")
        self.segmenter = segmenter
        self.classifier = classifier
        self.threshold = float(threshold)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.segmenter(image)
        presence_logits = self.classifier(image)
        if not torch.jit.is_tracing() and tuple(presence_logits.shape) != (image.shape[0], 1):
            raise ValueError(
                f"The classifier must return [B, 1] presence logits, got shape {tuple(presence_logits.shape)}."
            )
        keep = torch.sigmoid(presence_logits).view(-1, *([1] * (logits.ndim - 1))) > self.threshold
        gated = torch.where(keep, logits, torch.full_like(logits, EMPTY_LOGIT))
        return with_class_logits(gated, presence_logits, image)


def gated_state_dict(
    segmenter_state: Mapping[str, torch.Tensor], classifier_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The state dict of a :class:`PresenceGatedSegmenter` from the checkpoints of its two trained parts."""
    return {
        **{f"segmenter.{name}": tensor for name, tensor in segmenter_state.items()},
        **{f"classifier.{name}": tensor for name, tensor in classifier_state.items()},
    }
