"""Preparing a network for training, and the commands of progressive resizing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nerveseg.networks.initialise import initialise_network
from nerveseg.scripts.progressive import stage_overrides


def _network() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_whole_checkpoint_and_momentum(tmp_path):
    source = _network()
    torch.save(source.state_dict(), tmp_path / "model.pt")
    network = initialise_network(_network(), "cpu", bn_momentum=0.3, init_weights=tmp_path / "model.pt")
    torch.testing.assert_close(network[0].weight, source[0].weight)
    assert network[1].momentum == 0.3


def test_checkpoint_of_another_network(tmp_path):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"init_weights .*other.pt does not fit network_def"):
        initialise_network(_network(), init_weights=tmp_path / "other.pt")


def test_each_stage_starts_from_the_previous_one():
    sizes = [[64, 96], [128, 192]]
    first, second = stage_overrides(sizes, [3, 2], "models/p", "outputs/p", {"batch_size": 4})
    assert "init_weights" not in first and first["ckpt_dir"] == "models/p/stage0_64x96"
    assert second["init_weights"] == "models/p/stage0_64x96/model.pt"
    assert second["image_size"] == [128, 192] and second["output_dir"] == "outputs/p/stage1_128x192"
    assert second["num_epochs"] == 2 and first["batch_size"] == second["batch_size"] == 4


@pytest.mark.parametrize(
    "sizes, epochs, message",
    [([], [], "non-empty list"), ([[64]], [1], r"\[height, width\] pairs"), ([[64, 64]], [1, 2], "one positive")],
)
def test_bad_stage_settings(sizes, epochs, message):
    with pytest.raises(ValueError, match=message):
        stage_overrides(sizes, epochs, "m", "o")


def test_channels_last_puts_the_weights_in_nhwc_order_and_keeps_their_values():
    torch.manual_seed(0)
    reference = _network()
    torch.manual_seed(0)
    network = initialise_network(_network(), "cpu", channels_last=True)
    assert network[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(network[0].weight, reference[0].weight)
