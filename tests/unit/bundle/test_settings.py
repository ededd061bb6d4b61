"""Start-up checks of a run's settings: each names the key and a valid value."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nerveseg.bundle import settings
from nerveseg.utils.errors import UserInputError

GOOD = {"num_epochs": 12, "batch_size": 8, "image_size": [128, 160], "learning_rate": 5e-4}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"num_epochs": 0}, "num_epochs is 0: it must be a whole number >= 1; e.g. --num_epochs 12."),
        ({"num_epochs": 2.5}, "num_epochs is 2.5: it must be a whole number >= 1"),
        ({"batch_size": True}, "batch_size is True: it must be a whole number >= 1"),
        ({"learning_rate": 0}, "learning_rate is 0: it must be a number > 0; e.g. --learning_rate 5e-4."),
        ({"image_size": [128]}, "image_size is [128]: it must be [height, width], two whole numbers"),
        ({"image_size": "128"}, "image_size is '128': it must be"),
        ({"num_workers": -1}, "num_workers is -1: it must be a whole number >= 0"),
        ({"checkpoint_interval": 6, "accumulation_steps": 4}, "checkpoint_interval (6) is not a multiple of "
         "accumulation_steps (4): a checkpoint would fall inside an optimizer step; e.g. --checkpoint_interval 8."),
    ],
)  # fmt: skip
def test_a_bad_setting_is_named(override, message):
    with pytest.raises(UserInputError) as raised:
        settings.check_training_settings(**{**GOOD, **override})
    assert str(raised.value).startswith(message)


def test_good_settings_pass():
    settings.check_training_settings(**GOOD, checkpoint_interval=8, accumulation_steps=4)


class _Halving(nn.Module):
    """Two poolings and a skip connection joined by concatenation, as a U-Net's: sides must be multiples of 4."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 1, 1)
        self.conv = nn.Conv2d(2, 1, 1)
        self.norm = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        deep = nn.functional.interpolate(nn.functional.max_pool2d(x, 4), scale_factor=4)
        return self.norm(self.conv(torch.cat([x, deep], dim=1)))


def test_a_size_the_network_cannot_take_names_the_nearest_sizes():
    network = _Halving().train()
    before = network.norm.running_mean.clone()
    settings.check_image_size(network, [64, 96])
    with pytest.raises(UserInputError) as raised:
        settings.check_image_size(network, [66, 90])
    assert str(raised.value) == (
        "image_size is [66, 90]: _Halving cannot take it (its skip connections do not line up); the nearest sizes "
        'it takes are [64, 88] and [72, 96] (sides that are multiples of 8), e.g. --image_size "[64, 88]".'
    )
    assert network.training and torch.equal(network.norm.running_mean, before)  # mode and statistics untouched


def test_a_failure_that_is_not_about_the_size_is_the_network_own():
    with pytest.raises(RuntimeError, match="channels"):
        settings.check_image_size(nn.Sequential(nn.Conv2d(3, 1, 1), nn.Conv2d(2, 1, 1)), [32, 32])


def test_default_workers_fit_the_machine():
    assert 1 <= settings.default_num_workers() <= 4
    assert settings.default_num_workers(limit=1) == 1


def test_tuning_only_on_validation():
    settings.check_tuning_split("validation")
    with pytest.raises(UserInputError, match="eval_split is 'test': post-processing is tuned on the validation"):
        settings.check_tuning_split("test")


def test_eval_split_names_a_list():
    settings.check_eval_split("test")
    with pytest.raises(UserInputError, match="eval_split is 'tset': choose one of training, validation, test"):
        settings.check_eval_split("tset")
