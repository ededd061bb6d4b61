"""The one convention for networks with more than a mask to say: the class-logit side channel.

In ``eval()`` every network of this package returns one ``[B, C, H, W]`` tensor of mask logits, so MONAI's
inferers, metrics, export and MONAI Label work unchanged. Image-level logits (MUNet's class head, the two-stage
model's presence classifier) travel in the output's metadata when the input is a ``MetaTensor``, as it is in every
MONAI workflow: ``pred.meta[CLASS_LOGITS_KEY]`` is ``[B, K]`` on the batch and ``[K]`` per sample once MONAI
decollates the batch. It survives activation, but not ``Invertd``, which gives the prediction the image's metadata:
transforms that read it (``PresenceGated``) go before the resize is inverted, and handlers read it from the batch
output right after the forward pass.
"""

from __future__ import annotations

import torch
from monai.data import MetaTensor

__all__ = ["CLASS_LOGITS_KEY", "class_logits_of", "with_class_logits"]

CLASS_LOGITS_KEY = "class_logits"


def with_class_logits(output: torch.Tensor, class_logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``output`` carrying ``image``'s metadata and the detached ``[B, K]`` class logits, if ``image`` is a MetaTensor.

    For a plain ``image`` the plain ``output`` is returned, which keeps ``torch.jit.trace`` export working.
    """
    if not isinstance(image, MetaTensor):
        return output
    plain = output.as_tensor() if isinstance(output, MetaTensor) else output
    output = MetaTensor(plain).copy_meta_from(image)
    logits = class_logits.as_tensor() if isinstance(class_logits, MetaTensor) else class_logits
    output.meta[CLASS_LOGITS_KEY] = logits.detach()
    return output


def class_logits_of(pred: torch.Tensor) -> torch.Tensor | None:
    """The class logits a network attached to ``pred`` (one sample or a batch), or ``None``."""
    meta = getattr(pred, "meta", None)
    return None if meta is None else meta.get(CLASS_LOGITS_KEY)
