"""The settings a checkpoint was trained with: recorded beside it, compared by evaluation and inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nerveseg.bundle import trained_settings
from nerveseg.utils.errors import UserInputError


def test_a_checkpoint_is_checked_against_its_training_settings(tmp_path):
    network = nn.Conv2d(1, 1, 1)
    with pytest.raises(UserInputError, match=r"model.pt: no such checkpoint; train first"):
        trained_settings.check_checkpoint(tmp_path / "model.pt", network, [64, 96])
    torch.save(network.state_dict(), tmp_path / "model.pt")
    trained_settings.check_checkpoint(tmp_path / "model.pt", network, [64, 96])  # no settings recorded: not compared
    trained_settings.write_trained_settings(tmp_path, network, [64, 96])
    trained_settings.check_checkpoint(tmp_path / "model.pt", network, [64, 96])
    with pytest.raises(UserInputError, match=r'was trained at \[64, 96\] .*; pass --image_size "\[64, 96\]"'):
        trained_settings.check_checkpoint(tmp_path / "model.pt", network, [128, 128])
    with pytest.raises(
        UserInputError, match="Linear of 2 parameters, but .* trained with a torch.nn.modules.conv.Conv2d"
    ):
        trained_settings.check_checkpoint(tmp_path / "model.pt", nn.Linear(1, 1), [64, 96])
    with pytest.raises(UserInputError, match="Conv2d of 3 parameters, but .* of 2 .*; stack the same network override"):
        trained_settings.check_checkpoint(tmp_path / "model.pt", nn.Conv2d(2, 1, 1), [64, 96])
