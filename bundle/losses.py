"""Losses that MONAI lacks: multi-task losses over the training outputs of this package's networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceLoss, FocalLoss
from torch import nn

from nerveseg.utils.errors import UserInputError

__all__ = ["MUNetLoss"]


class MUNetLoss(nn.Module):
    """MUNet's multi-task loss (paper eq. 3-5): focal loss on the presence logits plus Dice losses of the branches.

    ``loss = focal(class_logits, presence) + mask_weight * sum_k (1 - Dice_k)`` over the four mask branches, where
    ``Dice_k`` is the soft Dice between ``sigmoid(branch_k)`` and the target, per sample and channel, then
    averaged (MONAI's ``DiceLoss(sigmoid=True)``; its smoothing makes an empty target predicted empty cost 0).
    The presence target of a sample and channel is 1 when its mask has any foreground (``> 0``, so soft targets
    such as eroded-and-smoothed masks count as present). The fused mask (the list's first element) is not in the
    loss: as in the paper, only the branches are trained, and the fusion has no parameters.

    Args:
        mask_weight: ``lambda``, the weight of the summed Dice losses (0.25 in the paper).
        gamma: focusing parameter of the focal loss.
        smooth: added to the numerator and denominator of every Dice (MONAI's default 1e-5). With 1e-5 an empty
            target costs almost 1 as soon as the branch predicts a few pixels; larger values (1.0) soften that.
    """

    def __init__(self, mask_weight: float = 0.25, gamma: float = 2.0, smooth: float = 1e-5) -> None:
        super().__init__()
        if mask_weight < 0:
            raise UserInputError(f"mask_weight must be at least 0, got {mask_weight}.")
        self.mask_weight = mask_weight
        self.focal = FocalLoss(use_softmax=False, gamma=gamma)
        self.dice = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth)

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """The scalar loss.

        Args:
            outputs: MUNet's training list ``[fused, b1, b2, b3, b4, class_logits]``, masks ``[B, C, H, W]`` and
                ``class_logits`` ``[B, C]``.
            target: masks ``[B, C, H, W]`` in [0, 1].
        """
        if isinstance(outputs, torch.Tensor) or not isinstance(outputs, Sequence) or len(outputs) != 6:
            got = f"a tensor of shape {tuple(outputs.shape)}" if isinstance(outputs, torch.Tensor) else type(outputs)
            raise UserInputError(
                "MUNetLoss needs the list MUNet returns in training mode ([fused, b1, b2, b3, b4, class_logits]), "
                f"got {got}. Is the network in eval() mode, or another network?"
            )
        branches, class_logits = outputs[1:5], outputs[5]
        if class_logits.shape[1] != target.shape[1]:
            raise UserInputError(
                f"MUNetLoss takes the presence targets from the mask, one per mask channel, so MUNet needs "
                f"num_classes == out_channels; got {class_logits.shape[1]} class logits for {target.shape[1]} mask "
                "channels."
            )
        presence = (target.flatten(2).amax(-1) > 0).to(class_logits.dtype)
        mask_loss = torch.stack([self.dice(branch, target) for branch in branches]).sum()
        return self.focal(class_logits, presence) + self.mask_weight * mask_loss
