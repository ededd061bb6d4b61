"""Deep supervision on BasicUNet and FlexibleUNet: coarser heads in training, MONAI's network in eval."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceFocalLoss
from monai.networks.nets import BasicUNet, FlexibleUNet

from nerveseg.networks.deep_supervision import DeepSupervisedBasicUNet, DeepSupervisedFlexibleUNet

FLEXIBLE = {"in_channels": 1, "out_channels": 1, "backbone": "efficientnet-b0"}
BASIC = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "features": (8, 8, 16, 16, 32, 8), "norm": "batch"}
NETWORKS = [(DeepSupervisedFlexibleUNet, FlexibleUNet, FLEXIBLE), (DeepSupervisedBasicUNet, BasicUNet, BASIC)]


@pytest.mark.parametrize(("supervised", "plain", "options"), NETWORKS)
def test_training_returns_the_full_size_logits_then_each_coarser_head_fine_to_coarse(supervised, plain, options):
    torch.manual_seed(0)
    network = supervised(**options, supervision_levels=3).train()
    outputs = network(torch.rand(2, 1, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 64, 96), (2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12)]


@pytest.mark.parametrize(("supervised", "plain", "options"), NETWORKS)
def test_eval_is_monai_network_with_the_same_weights(supervised, plain, options):
    torch.manual_seed(0)
    network = supervised(**options, supervision_levels=2).eval()
    monai_network = plain(**options).eval()
    missing, unexpected = monai_network.load_state_dict(network.state_dict(), strict=False)
    assert not missing and unexpected and all(key.startswith("supervision_heads.") for key in unexpected)
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network(image), monai_network(image))


@pytest.mark.parametrize(("supervised", "plain", "options"), NETWORKS)
def test_training_full_size_logits_are_monai_networks(supervised, plain, options):
    torch.manual_seed(0)
    network = supervised(**options, supervision_levels=1).train()
    monai_network = plain(**options).train()
    monai_network.load_state_dict(network.state_dict(), strict=False)
    image = torch.rand(2, 1, 64, 64)
    torch.manual_seed(1)  # the same drop-connect draws on both
    supervised_logits = network(image)[0]
    torch.manual_seed(1)
    torch.testing.assert_close(supervised_logits, monai_network(image))


@pytest.mark.parametrize(("supervised", "plain", "options"), NETWORKS)
def test_every_head_gets_a_gradient_from_monai_deep_supervision_loss(supervised, plain, options):
    torch.manual_seed(0)
    network = supervised(**options, supervision_levels=3).train()
    label = torch.zeros(2, 1, 64, 64)
    label[:, :, 16:48, 20:40] = 1
    DeepSupervisionLoss(DiceFocalLoss(sigmoid=True), weight_mode="exp")(
        network(torch.rand(2, 1, 64, 64)), label
    ).backward()
    assert all(float(head.weight.grad.abs().sum()) > 0 for head in network.supervision_heads)


@pytest.mark.parametrize(
    ("supervised", "options", "levels", "most"),
    [(DeepSupervisedFlexibleUNet, FLEXIBLE, 0, 4), (DeepSupervisedFlexibleUNet, FLEXIBLE, 5, 4)]
    + [(DeepSupervisedBasicUNet, BASIC, 0, 3), (DeepSupervisedBasicUNet, BASIC, 4, 3)],
)
def test_a_level_count_outside_the_decoder_is_refused_with_the_range(supervised, options, levels, most):
    with pytest.raises(ValueError, match=rf"supervision_levels must be between 1 and {most} .* got {levels}"):
        supervised(**options, supervision_levels=levels)
