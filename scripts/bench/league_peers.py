"""The league's peer systems: the models a user would train instead of the bundle, trained the way their users do.

Each peer is a plain PyTorch loop, as in its library's examples: Adam at 1e-3 (PyTorch's default rate) annealed
to 0 on a cosine over the run's steps, random left-right and up-down flips, the last epoch kept, no
post-processing. The loop sees the images already in memory at the league's size, so its time is the network's,
not data loading's.

Two choices keep the peers from failing in eval mode for a reason that is not their design; the bundle makes the
same two (train.json's ``bn_momentum`` 0.1 and its cosine schedule). Batch-norm momentum is 0.1, PyTorch's
default: both libraries' EfficientNet encoders keep TensorFlow's 0.01, whose running statistics are still a
quarter of the way from their initial values after the league's ~140 steps (``0.99 ** 136``). And the rate ends
low: with a constant rate the weights still moved so fast at the end that the running statistics no longer fitted
them. On USGRA-seg's training images (96x96, 136 steps) FlexibleUNet-b0 with momentum 0.01 and a constant rate
predicted nothing in eval mode (its largest probability 0.05; training mode marked 5% of the pixels as nerve, the
masks 4%), with momentum 0.1 it marked 38%, and with the cosine as well 9%. (A first league run had scored both
peers 0.0 on the test split; the causes were found on training images, not tuned on the test split.)

- ``smp Unet-b1``: segmentation_models_pytorch's ``Unet("efficientnet-b1", encoder_weights=None)`` with its Dice
  loss plus binary cross-entropy (the benchmark extra installs it);
- ``MONAI FlexibleUNet-b0``: MONAI's ``FlexibleUNet`` with an EfficientNet-b0 encoder and MONAI's ``DiceLoss``
  (sigmoid), the obvious MONAI user's model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nerveseg.networks.batchnorm import set_batchnorm_momentum
from nerveseg.scripts.bench.machine import require_benchmark_extra
from nerveseg.utils.errors import UserInputError

__all__ = ["PEERS", "peer_probabilities", "plain_step", "smp_unet_b1"]

FLIPS = ((), (-1,), (-2,), (-2, -1))
"""The four views of the peers' test-time augmentation: the image, flipped left-right, up-down and both ways."""

PEER_LEARNING_RATE = 1e-3
PEER_BN_MOMENTUM = 0.1


def plain_step(
    network: nn.Module,
    loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One training step as a user writes it, the peers' and ``bench training``'s bare loop: zero the gradients,
    forward, loss, backward, optimizer step; it returns the loss."""

    def step(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(images), masks)
        loss.backward()
        optimizer.step()
        return loss

    return step


def smp_unet_b1() -> nn.Module:
    """segmentation_models_pytorch's ``Unet`` with an EfficientNet-b1 encoder, one channel in and one out, random
    weights (no download).

    Raises:
        UserInputError: segmentation_models_pytorch is not installed; the message gives the install command.
    """
    require_benchmark_extra("The smp peer", "segmentation_models_pytorch")
    import segmentation_models_pytorch as smp

    return smp.Unet("efficientnet-b1", encoder_weights=None, in_channels=1, classes=1)


def _smp_unet_b1() -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    network = smp_unet_b1()
    import segmentation_models_pytorch as smp

    dice, bce = smp.losses.DiceLoss("binary", from_logits=True), nn.BCEWithLogitsLoss()
    return network, lambda logits, masks: dice(logits, masks) + bce(logits, masks)


def _monai_flexible_unet_b0() -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    from monai.losses import DiceLoss
    from monai.networks.nets import FlexibleUNet

    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0", pretrained=False)
    return network, DiceLoss(sigmoid=True)


PEERS: dict[str, Callable[[], tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]] = {
    "smp Unet-b1": _smp_unet_b1,
    "MONAI FlexibleUNet-b0": _monai_flexible_unet_b0,
}
"""Peer name to a function giving its network (random weights) and its loss of ``(logits, masks)``."""


def peer_probabilities(
    peer: str,
    train_images: torch.Tensor,
    train_masks: torch.Tensor,
    test_images: torch.Tensor,
    num_epochs: int,
    batch_size: int,
    seed: int,
) -> tuple[dict[int, torch.Tensor], dict[str, Any]]:
    """Train peer ``peer`` from random weights and return its foreground probabilities of ``test_images``, from one
    view and from four (the plain mean of the image and its left-right, up-down and both-ways flips, each flipped
    back: the test-time augmentation a user of either library would write).

    Args:
        peer: a name of :data:`PEERS`.
        train_images: ``[N, 1, H, W]`` float images at the league's size.
        train_masks: ``[N, 1, H, W]`` binary float masks, same size.
        test_images: ``[M, 1, H, W]`` images to predict, same size.
        num_epochs: passes over the training images; the cosine schedule spans them.
        batch_size: images per step; the last, smaller batch of an epoch is kept.
        seed: seeds the weights, the order and the flips.

    Returns:
        ``[M, 1, H, W]`` probabilities by number of views (1 and 4), and ``train_seconds``, ``steps`` and the loss
        of the last epoch.
    """
    if peer not in PEERS:
        raise UserInputError(f"Unknown peer {peer!r}; choose from {list(PEERS)}.")
    torch.manual_seed(seed)
    network, loss_function = PEERS[peer]()
    network = set_batchnorm_momentum(network, PEER_BN_MOMENTUM).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=PEER_LEARNING_RATE)
    total = num_epochs * math.ceil(len(train_images) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    generator, step = torch.Generator().manual_seed(seed), plain_step(network, loss_function, optimizer)
    steps, losses, start = 0, [], time.perf_counter()
    for _ in range(num_epochs):
        losses = []
        for rows in torch.randperm(len(train_images), generator=generator).split(batch_size):
            images, masks = train_images[rows], train_masks[rows]
            for dim in (-1, -2):  # each flip for each image with probability 1/2
                flip = torch.rand(len(rows), generator=generator) < 0.5
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(dim), images)
                masks = torch.where(flip.view(-1, 1, 1, 1), masks.flip(dim), masks)
            losses.append(step(images, masks).item())
            schedule.step()
            steps += 1
    seconds = time.perf_counter() - start
    network.eval()
    views: dict[int, list[torch.Tensor]] = {1: [], 4: []}
    with torch.no_grad():
        for batch in test_images.split(batch_size):
            maps = [_flip(torch.sigmoid(network(_flip(batch, dims))), dims) for dims in FLIPS]
            views[1].append(maps[0])
            views[4].append(torch.stack(maps).mean(0))
    probabilities = {count: torch.cat(maps) for count, maps in views.items()}
    return probabilities, {"train_seconds": seconds, "steps": steps, "last_epoch_loss": sum(losses) / len(losses)}


def _flip(images: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return images.flip(dims) if dims else images
