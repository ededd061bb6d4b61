"""Network helpers."""

from __future__ import annotations

import pytest
from monai.networks.nets import FlexibleUNet
from torch import nn

from nerveseg.networks.batchnorm import set_batchnorm_momentum


def test_every_batchnorm_gets_the_momentum():
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0", spatial_dims=2)
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {m.momentum for m in norms} == {0.01, 0.1}  # MONAI: TF momentum in the encoder, PyTorch's in the decoder
    assert set_batchnorm_momentum(network, 0.1) is network
    assert {m.momentum for m in norms} == {0.1}


@pytest.mark.parametrize("momentum", [0.0, -0.1, 1.5])
def test_momentum_out_of_range(momentum):
    with pytest.raises(ValueError, match="momentum must be in"):
        set_batchnorm_momentum(nn.BatchNorm2d(3), momentum)
