"""The settings a checkpoint was trained with, recorded beside it and checked by evaluation and inference.

Training writes ``{ckpt_dir}/training_settings.json`` (image size and network) beside its weights; evaluation and
inference stop with one :class:`~nerveseg.utils.errors.UserInputError` when theirs differ, rather than silently
scoring a checkpoint at a size it never saw or with another network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import write_json_atomically

__all__ = [
    "TRAINED_SETTINGS",
    "check_checkpoint",
    "read_trained_settings",
    "trained_settings",
    "write_trained_settings",
]

TRAINED_SETTINGS = "training_settings.json"


def trained_settings(network: nn.Module, image_size: Sequence[int]) -> dict:
    """What evaluation and inference must repeat of a training run: its image size and network class."""
    network = getattr(network, "module", network)  # DistributedDataParallel's wrapper
    return {
        "image_size": [int(side) for side in image_size],
        "network": f"{type(network).__module__}.{type(network).__qualname__}",
        "parameters": sum(p.numel() for p in network.parameters()),
    }


def write_trained_settings(ckpt_dir: str | os.PathLike, network: nn.Module, image_size: Sequence[int]) -> Path:
    """Write :func:`trained_settings` to ``{ckpt_dir}/training_settings.json`` (atomically); return its path."""
    return write_json_atomically(Path(ckpt_dir) / TRAINED_SETTINGS, trained_settings(network, image_size))


def read_trained_settings(checkpoint: str | os.PathLike) -> dict | None:
    """The ``training_settings.json`` beside ``checkpoint``; ``None`` where there is none (weights from elsewhere).

    Raises:
        UserInputError: the file cannot be read.
    """
    path = Path(checkpoint).with_name(TRAINED_SETTINGS)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: unreadable ({error}); delete it to skip this check, or train again.") from error


def check_checkpoint(checkpoint: str | os.PathLike, network: nn.Module, image_size: Sequence[int]) -> None:
    """Stop with a :class:`UserInputError` when ``checkpoint`` is missing, or was trained at another image size or
    with another network (class or parameter count) than this run's.

    The settings come from ``training_settings.json`` beside the checkpoint (written by training); a folder without
    one (weights from elsewhere, or from a bundle older than 0.7.0) is checked for the file only.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserInputError(
            f"{checkpoint}: no such checkpoint; train first (python -m monai.bundle run training ...) or set "
            "--ckpt_dir to the folder that holds model.pt."
        )
    trained = read_trained_settings(checkpoint)
    if trained is None:
        return
    path = checkpoint.with_name(TRAINED_SETTINGS)
    current = trained_settings(network, image_size)
    if trained.get("image_size") != current["image_size"]:
        size = trained.get("image_size")
        raise UserInputError(
            f"image_size is {current['image_size']}, but {checkpoint} was trained at {size} ({path}); pass "
            f'--image_size "{size}" as in training, or set --ckpt_dir to a model trained at {current["image_size"]}.'
        )
    if (trained.get("network"), trained.get("parameters")) != (current["network"], current["parameters"]):
        raise UserInputError(
            f"the network is a {current['network']} of {current['parameters']:,} parameters, but {checkpoint} was "
            f"trained with a {trained.get('network')} of {trained.get('parameters', 0):,} ({path}); stack the same "
            "network override (configs/networks/*.json) and network settings (backbone, features) as in training."
        )
