"""The trainer's batch preparation: plain tensors for the network and loss, images in channels-last order."""

from __future__ import annotations

import copy

import torch
from monai.data import MetaTensor
from torch import nn

from nerveseg.bundle.training import TrainingBatch


def _batch() -> dict[str, torch.Tensor]:
    images = MetaTensor(torch.rand(2, 1, 8, 6), meta={"filename_or_obj": ["a.png", "b.png"]})
    return {"image": images, "label": MetaTensor((torch.rand(2, 1, 8, 6) > 0.5).float())}


def test_metadata_is_dropped_and_images_are_channels_last():
    batch = _batch()
    images, labels = TrainingBatch(channels_last=True)(batch, torch.device("cpu"))
    assert type(images) is torch.Tensor and type(labels) is torch.Tensor
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, batch["image"].as_tensor()) and torch.equal(labels, batch["label"].as_tensor())


def test_contiguous_order_when_asked_and_no_label_gives_none():
    batch = _batch()
    del batch["label"]
    images, labels = TrainingBatch(channels_last=False)(batch)
    assert labels is None and type(images) is torch.Tensor and images.is_contiguous()


def test_a_channels_last_network_trains_to_the_same_weights():
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 1, 1)
    )
    twin = copy.deepcopy(network).to(memory_format=torch.channels_last)
    batch = _batch()
    for net, channels_last in ((network, False), (twin, True)):
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        images, labels = TrainingBatch(channels_last)(batch)
        nn.functional.binary_cross_entropy_with_logits(net(images), labels).backward()
        optimizer.step()
    for a, b in zip(network.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
