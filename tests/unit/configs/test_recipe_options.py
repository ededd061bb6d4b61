"""The recipe's override files: preprocessing, augmentation and the seed's recipe (schedules: test_schedules.py)."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from conftest import CONFIGS

TRAIN = CONFIGS / "train.json"
AUGMENTATION_FILES = sorted((CONFIGS / "augmentation").glob("*.json"))


def _parser(*files) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(TRAIN), *(str(f) for f in files)])
    return parser


def _sample(size: int = 64) -> dict[str, torch.Tensor]:
    label = torch.zeros(1, size, size)
    label[:, 16:40, 20:44] = 1
    return {"image": torch.rand(1, size, size), "label": label}


@pytest.mark.parametrize("path", AUGMENTATION_FILES, ids=[p.stem for p in AUGMENTATION_FILES])
def test_an_augmentation_set_keeps_sizes_a_binary_label_and_images_in_range(path):
    augmentation = Compose(_parser(path).get_parsed_content("train#augmentation"))
    augmentation.set_random_state(seed=0)
    for _ in range(20):  # enough draws that each random transform fires at least once
        out = augmentation(_sample())
        assert out["image"].shape == (1, 64, 64) and out["label"].shape == (1, 64, 64)
        assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
        assert set(torch.unique(torch.as_tensor(out["label"])).tolist()) <= {0.0, 1.0}


def test_nnunet_augmentation_rotates_and_scales_image_and_label_together():
    augmentation = Compose(_parser(CONFIGS / "augmentation" / "nnunet.json").get_parsed_content("train#augmentation"))
    augmentation.set_random_state(seed=0)
    moved = 0
    for _ in range(30):
        sample = _sample()
        sample["image"] = sample["label"].clone()  # the image is its mask: a spatial change moves both alike
        out = augmentation(sample)
        image, label = torch.as_tensor(out["image"]), torch.as_tensor(out["label"])
        moved += int(not torch.equal(label, sample["label"]) and not torch.equal(label, sample["label"].flip(-1)))
        assert float(((image > 0.5) != (label > 0.5)).float().mean()) < 0.05
    assert moved > 0


def test_zscore_scales_each_image_to_mean_zero_and_unit_spread_in_training_and_evaluation():
    parser = _parser(CONFIGS / "preprocessing" / "zscore.json")
    normalise = parser.get_parsed_content("load_transforms#2")  # shared by training, evaluation and inference
    image = 100.0 + 30.0 * torch.rand(1, 32, 32)
    out = torch.as_tensor(normalise({"image": image})["image"])
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5) and float(out.std()) == pytest.approx(1.0, abs=0.02)
    clip = parser.get_parsed_content("train#augmentation#4")  # the default's clip to [0, 1] would cut it
    assert torch.equal(torch.as_tensor(clip({"image": out})["image"]), out)


def test_the_nerve_seed_recipe_trains_the_seed_network_at_its_learning_rate():
    seed, flexible = (
        _parser(CONFIGS / "recipes" / "nerve_seed.json"),
        _parser(CONFIGS / "networks" / "flexible_unet.json"),
    )
    assert seed["network_def"] == flexible["network_def"]  # one network, named in two files: they must not drift
    assert seed["network_def"]["_target_"] == "FlexibleUNet" and seed["network_def"]["backbone"] == "efficientnet-b1"
    assert seed["learning_rate"] == 0.0005 != _parser()["learning_rate"]


def test_the_two_stage_segmenter_is_the_default_network():
    gated = _parser(CONFIGS / "networks" / "presence_gated.json")
    assert gated["network_def"]["segmenter"] == _parser()["network_def"]  # nerveseg gate joins the default run
