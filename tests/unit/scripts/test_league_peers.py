"""The league's peers: the plain training step, and a peer trained the way its users do, seeded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nerveseg.scripts.bench.league_peers import peer_probabilities, plain_step
from nerveseg.utils.errors import UserInputError


def test_the_plain_step_trains_and_returns_its_loss():
    torch.manual_seed(0)
    network = nn.Conv2d(1, 1, 3, padding=1)
    images, masks = torch.rand(4, 1, 8, 8), (torch.rand(4, 1, 8, 8) > 0.5).float()
    step = plain_step(network, nn.BCEWithLogitsLoss(), torch.optim.SGD(network.parameters(), lr=0.5))
    losses = [step(images, masks).item() for _ in range(20)]
    assert losses[-1] < losses[0]
    with torch.no_grad():
        assert nn.BCEWithLogitsLoss()(network(images), masks).item() < losses[-1]  # the step updated the weights


def test_a_peer_is_trained_from_its_seed_and_predicts_one_and_four_views():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 1, 32, 32, generator=generator)
    masks = (images > 0.6).float()
    runs = [peer_probabilities("MONAI FlexibleUNet-b0", images, masks, images[:3], 1, 2, seed=1) for _ in range(2)]
    (first, info), (second, _) = runs
    assert sorted(first) == [1, 4] and first[1].shape == first[4].shape == (3, 1, 32, 32)
    assert info["steps"] == 2 and 0 <= first[4].min() and first[4].max() <= 1
    torch.testing.assert_close(first[1], second[1])  # the seed decides the weights, the order and the flips
    with pytest.raises(UserInputError, match="Unknown peer 'nnU-Net'"):
        peer_probabilities("nnU-Net", images, masks, images, 1, 2, seed=0)
