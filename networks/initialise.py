"""Preparing a network for training: device, starting weights, drop-connect, batch-norm momentum, in one step the
config names."""

from __future__ import annotations

import os

import torch
from torch import nn

from nerveseg.networks.batchnorm import set_batchnorm_momentum
from nerveseg.networks.drop_connect import set_drop_connect_rate
from nerveseg.networks.encoders import load_encoder_weights
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import read_state_dict

__all__ = ["initialise_network"]


def initialise_network(
    network: nn.Module,
    device: torch.device | str = "cpu",
    bn_momentum: float = 0.1,
    pretrained_path: str | os.PathLike | None = None,
    init_weights: str | os.PathLike | None = None,
    channels_last: bool = False,
    drop_connect_rate: float | None = None,
) -> nn.Module:
    """Move ``network`` to ``device``, load its starting weights, set its drop-connect and batch-norm momentum, and
    return it.

    Args:
        network: the network built from ``network_def``.
        device: where to train.
        bn_momentum: see :func:`nerveseg.networks.batchnorm.set_batchnorm_momentum`.
        pretrained_path: local ImageNet weights for the encoder, see
            :func:`~nerveseg.networks.encoders.load_encoder_weights`.
        init_weights: a whole checkpoint of this network (``models/model.pt`` of an earlier run) to start from, as
            the stages of progressive training do; loaded after ``pretrained_path``.
        channels_last: put the 4D weights in channels-last memory order, to train on channels-last batches
            (:class:`nerveseg.bundle.training.TrainingBatch`); the state dict's values are the same either way.
        drop_connect_rate: the EfficientNet encoder's drop-connect, see
            :func:`nerveseg.networks.drop_connect.set_drop_connect_rate`; None keeps the backbone's own.
    """
    network = load_encoder_weights(network.to(device), pretrained_path)
    if init_weights is not None:
        state = read_state_dict(init_weights, what="Initial weights")
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise UserInputError(f"init_weights {init_weights} does not fit network_def: {error}") from error
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    if drop_connect_rate is not None:
        network = set_drop_connect_rate(network, drop_connect_rate)
    return set_batchnorm_momentum(network, bn_momentum)
