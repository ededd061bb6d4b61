"""Drop-connect of EfficientNet encoders."""

from __future__ import annotations

import pytest
from monai.networks.nets import BasicUNet, FlexibleUNet
from monai.networks.nets.efficientnet import MBConvBlock

from nerveseg.networks.drop_connect import set_drop_connect_rate
from nerveseg.networks.initialise import initialise_network


def _rates(network) -> list[float]:
    return [m.drop_connect_rate or 0.0 for m in network.modules() if isinstance(m, MBConvBlock)]


def test_rate_scales_monai_schedule():
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0", spatial_dims=2)
    before = _rates(network)
    assert before[0] == 0.0 and max(before) < 0.2  # MONAI: 0.2 shared out by depth
    assert set_drop_connect_rate(network, 0.1) is network
    assert _rates(network) == pytest.approx([rate / 2 for rate in before])


def test_rate_zero_through_initialise_and_back():
    network = initialise_network(
        FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0", spatial_dims=2), drop_connect_rate=0.0
    )
    assert set(_rates(network)) == {0.0}
    fresh = _rates(FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0", spatial_dims=2))
    assert _rates(set_drop_connect_rate(network, 0.2)) == pytest.approx(fresh)  # MONAI's own schedule again


def test_network_without_efficientnet():
    with pytest.raises(ValueError, match="BasicUNet has no EfficientNet encoder; set drop_connect_rate to null"):
        set_drop_connect_rate(BasicUNet(spatial_dims=2, features=(4, 4, 4, 4, 4, 4)), 0.1)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_rate_out_of_range(rate):
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        set_drop_connect_rate(BasicUNet(spatial_dims=2, features=(4, 4, 4, 4, 4, 4)), rate)
