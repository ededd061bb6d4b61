"""FlexibleUNet with deep supervision: coarser heads in training, MONAI's FlexibleUNet in eval."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceFocalLoss
from monai.networks.nets import FlexibleUNet

from nerveseg.networks.deep_supervision import DeepSupervisedFlexibleUNet

OPTIONS = {"in_channels": 1, "out_channels": 1, "backbone": "efficientnet-b0"}


def test_training_returns_the_full_size_logits_then_each_coarser_head_fine_to_coarse():
    torch.manual_seed(0)
    network = DeepSupervisedFlexibleUNet(**OPTIONS, supervision_levels=3).train()
    outputs = network(torch.rand(2, 1, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 64, 96), (2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12)]


def test_eval_is_flexible_unet_with_the_same_weights():
    torch.manual_seed(0)
    network = DeepSupervisedFlexibleUNet(**OPTIONS, supervision_levels=2).eval()
    plain = FlexibleUNet(**OPTIONS).eval()
    missing, unexpected = plain.load_state_dict(network.state_dict(), strict=False)
    assert not missing and all(key.startswith("supervision_heads.") for key in unexpected)
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network(image), plain(image))


def test_every_head_gets_a_gradient_from_monai_deep_supervision_loss():
    torch.manual_seed(0)
    network = DeepSupervisedFlexibleUNet(**OPTIONS, supervision_levels=3).train()
    label = torch.zeros(2, 1, 64, 64)
    label[:, :, 16:48, 20:40] = 1
    DeepSupervisionLoss(DiceFocalLoss(sigmoid=True), weight_mode="exp")(
        network(torch.rand(2, 1, 64, 64)), label
    ).backward()
    assert all(float(head.weight.grad.abs().sum()) > 0 for head in network.supervision_heads)


@pytest.mark.parametrize("levels", [0, 5])
def test_a_level_count_outside_the_decoder_is_refused_with_the_range(levels):
    with pytest.raises(ValueError, match=r"supervision_levels must be between 1 and 4 .* got " + str(levels)):
        DeepSupervisedFlexibleUNet(**OPTIONS, supervision_levels=levels)
