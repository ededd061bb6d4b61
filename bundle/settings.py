"""A run's settings, checked when it starts: the values a user sets and the image size the network takes.

Configs call these from ``initialize``, so that a setting the run cannot use stops it before data loading, with one
:class:`~nerveseg.utils.errors.UserInputError` that names the key (as set on the command line) and a valid value.
The settings a checkpoint was trained with are checked by :mod:`nerveseg.bundle.trained_settings`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import nn

from nerveseg.bundle.data.datalist import SPLITS
from nerveseg.utils.errors import UserInputError

__all__ = [
    "check_eval_split",
    "check_image_size",
    "check_training_settings",
    "check_tuning_split",
    "default_num_workers",
]
_MAX_MULTIPLE = 256


def default_num_workers(limit: int = 4) -> int:
    """Data-loader worker processes: the CPUs this process may use, at most ``limit`` (PyTorch warns above them)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(limit, cpus))


def _whole(key: str, value: object, minimum: int, example: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserInputError(f"{key} is {value!r}: it must be a whole number >= {minimum}; e.g. --{key} {example}.")


def check_training_settings(
    num_epochs: int,
    batch_size: int,
    image_size: Sequence[int],
    learning_rate: float,
    val_interval: int = 1,
    num_workers: int = 0,
    accumulation_steps: int = 1,
    checkpoint_interval: int = 0,
) -> None:
    """Stop with a :class:`UserInputError` naming the first setting a training run cannot use.

    Args:
        num_epochs: epochs to train, >= 1.
        batch_size: images per step, >= 1.
        image_size: ``[height, width]`` the images are resized to, each >= 1 (see :func:`check_image_size` for what
            the network takes).
        learning_rate: > 0.
        val_interval: validate every this many epochs, >= 1.
        num_workers: data-loader worker processes, >= 0.
        accumulation_steps: batches per optimizer step, >= 1.
        checkpoint_interval: write ``last.pt`` every this many iterations as well as every epoch (0: every epoch
            only); a multiple of ``accumulation_steps``, so that no checkpoint falls between two halves of a step.
    """
    _whole("num_epochs", num_epochs, 1, 12)
    _whole("batch_size", batch_size, 1, 8)
    _whole("val_interval", val_interval, 1, 1)
    _whole("num_workers", num_workers, 0, default_num_workers())
    _whole("accumulation_steps", accumulation_steps, 1, 4)
    _whole("checkpoint_interval", checkpoint_interval, 0, 100)
    if checkpoint_interval % accumulation_steps:
        raise UserInputError(
            f"checkpoint_interval ({checkpoint_interval}) is not a multiple of accumulation_steps "
            f"({accumulation_steps}): a checkpoint would fall inside an optimizer step; e.g. --checkpoint_interval "
            f"{accumulation_steps * max(1, round(checkpoint_interval / accumulation_steps))}."
        )
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise UserInputError(f"learning_rate is {learning_rate!r}: it must be a number > 0; e.g. --learning_rate 5e-4.")
    _image_size_shape(image_size)


def check_eval_split(eval_split: str) -> None:
    """Stop with a :class:`UserInputError` unless ``eval_split`` names a list of a datalist."""
    if eval_split not in SPLITS:
        raise UserInputError(
            f"eval_split is {eval_split!r}: choose one of {', '.join(SPLITS)}; validation is the default, test a "
            "held-out list (`nerveseg prepare --test_fraction` or `--test_subjects` writes a labelled one)."
        )


def check_tuning_split(eval_split: str) -> None:
    """Stop with a :class:`UserInputError` unless post-processing is tuned on the validation split.

    A threshold chosen on the test split makes that split's score optimistic: tune on validation, then score the
    tuned override on test with the evaluation (``--eval_split test``).
    """
    if eval_split != "validation":
        raise UserInputError(
            f"eval_split is {eval_split!r}: post-processing is tuned on the validation split only, since tuning on "
            f"{eval_split!r} would overstate its score; drop --eval_split here, then score the tuned override with "
            f"`python -m monai.bundle run evaluating ... --eval_split {eval_split}`."
        )


def _image_size_shape(image_size: Sequence[int]) -> tuple[int, int]:
    if (
        isinstance(image_size, (str, bytes))
        or not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in image_size)
    ):
        raise UserInputError(
            f"image_size is {image_size!r}: it must be [height, width], two whole numbers; e.g. --image_size "
            '"[448, 576]".'
        )
    return int(image_size[0]), int(image_size[1])


def _runs_at(network: nn.Module, size: Sequence[int], in_channels: int, device: torch.device) -> bool:
    try:
        network(torch.zeros(1, in_channels, *size, device=device))
    except (RuntimeError, ValueError):  # torch's "Sizes of tensors must match", our networks' "divisible by 32"
        return False
    return True


def check_image_size(network: nn.Module, image_size: Sequence[int]) -> None:
    """Stop with a :class:`UserInputError` when ``network`` cannot take ``image_size``, naming the nearest sizes.

    One forward pass of a zero image at ``image_size`` in eval mode, without gradients (batch-norm statistics and
    random streams untouched), so that a size the network's skip connections cannot join fails at start-up rather
    than after minutes of data loading. When it fails, sides that are multiples of 8, 16, 32, ... are tried around
    ``image_size`` and the first pair that runs is named. A failure at every size is not about the size, and is
    raised as the network's own error.
    """
    size = _image_size_shape(image_size)
    first = next((m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    in_channels = first.in_channels if first is not None else 1
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = network.training
    network.eval()
    try:
        with torch.no_grad():
            if _runs_at(network, size, in_channels, device):
                return
            multiple = 8
            while multiple <= _MAX_MULTIPLE:
                below = [max(multiple, side // multiple * multiple) for side in size]
                above = [math.ceil(side / multiple) * multiple for side in size]
                if _runs_at(network, below, in_channels, device) and _runs_at(network, above, in_channels, device):
                    raise UserInputError(
                        f"image_size is {list(size)}: {type(network).__name__} cannot take it (its skip connections "
                        f"do not line up); the nearest sizes it takes are {below} and {above} (sides that are "
                        f'multiples of {multiple}), e.g. --image_size "{below}".'
                    )
                multiple *= 2
            network(torch.zeros(1, in_channels, *size, device=device))  # not about the size: its own error
    finally:
        network.train(training)
