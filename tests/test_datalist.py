"""Datalists: pairing, subject-grouped splits, and one clear error per bad file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from monai.bundle import ConfigParser
from PIL import Image

from conftest import CONFIGS
from nerveseg.bundle.data.datalist import (
    build_datalist,
    build_inference_list,
    check_item,
    split_by_subject,
    subject_of,
)
from nerveseg.bundle.data.io import DatasetError


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _challenge_folder(root, subjects=3, frames=2, shape=(20, 30)):
    rng = np.random.default_rng(0)
    for subject in range(1, subjects + 1):
        for frame in range(1, frames + 1):
            _save(root / "train" / f"{subject}_{frame}.tif", rng.integers(0, 255, shape))
            mask = np.zeros(shape)
            mask[5:10, 5:12] = 255 * (frame % 2)
            _save(root / "train" / f"{subject}_{frame}_mask.tif", mask)
    _save(root / "test" / "1.tif", rng.integers(0, 255, shape))
    _save(root / "test" / "10.tif", rng.integers(0, 255, shape))
    _save(root / "test" / "2.tif", rng.integers(0, 255, shape))
    return root


def test_challenge_layout(tmp_path):
    datalist = build_datalist(_challenge_folder(tmp_path), val_fraction=0.34, seed=1)
    assert len(datalist["training"]) + len(datalist["validation"]) == 6
    train_subjects = {item["subject"] for item in datalist["training"]}
    val_subjects = {item["subject"] for item in datalist["validation"]}
    assert len(val_subjects) == 1 and not train_subjects & val_subjects
    for item in datalist["training"]:
        assert item["label"] == item["image"].replace(".tif", "_mask.tif")
    assert [p["image"].rsplit("/", 1)[1] for p in datalist["test"]] == ["1.tif", "2.tif", "10.tif"]


def test_split_is_deterministic_grouped_and_stratified():
    rates = [0.05, 0.9, 0.5, 0.2, 0.7, 0.1, 0.6, 0.3, 0.8, 0.4]
    items = [{"subject": str(s), "image": f"{s}_{f}"} for s in range(10) for f in range(20)]
    positive = [f < 20 * rates[int(item["subject"])] for item in items for f in [int(item["image"].split("_")[1])]]
    first = split_by_subject(items, 0.3, seed=3, positive=positive)
    assert first == split_by_subject(items, 0.3, seed=3, positive=positive)
    training, validation = first
    assert len(validation) == 60
    assert not {i["subject"] for i in training} & {i["subject"] for i in validation}
    val_rate = sum(p for item, p in zip(items, positive, strict=True) if item in validation) / len(validation)
    assert abs(val_rate - sum(positive) / len(positive)) < 0.02


def test_subject_of():
    assert subject_of("/data/train/12_7.tif") == "12"
    assert subject_of("/data/images/0003.png") == "0003"


def test_datalist_file_passes_through(tmp_path):
    root = _challenge_folder(tmp_path)
    lists = {
        "training": [
            {"image": "train/1_1.tif", "label": "train/1_1_mask.tif"},
            {"image": "train/2_1.tif", "label": "train/2_1_mask.tif"},
        ],
        "validation": [{"image": "train/3_1.tif", "label": "train/3_1_mask.tif"}],
        "test": [],  # `nerveseg prepare` without --test_fraction writes an empty test split
    }
    (root / "datalist.json").write_text(json.dumps(lists))
    datalist = build_datalist(datalist_file=root / "datalist.json")
    assert [item["image"] for item in datalist["validation"]] == [str(root / "train" / "3_1.tif")]
    assert len(datalist["training"]) == 2 and datalist["test"] == []


def test_missing_dataset_dir(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        build_datalist(tmp_path / "nowhere")


def test_folder_without_images(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        build_datalist(tmp_path)


def test_image_without_mask(tmp_path):
    root = _challenge_folder(tmp_path)
    (root / "train" / "2_2_mask.tif").unlink()
    with pytest.raises(DatasetError, match=r"2_2\.tif: image has no mask"):
        build_datalist(root)


def test_mask_size_differs(tmp_path):
    root = _challenge_folder(tmp_path)
    _save(root / "train" / "1_2_mask.tif", np.zeros((21, 30)))
    with pytest.raises(DatasetError, match=r"1_2_mask\.tif: mask size 30x21 differs"):
        build_datalist(root)


def test_corrupt_tiff(tmp_path):
    root = _challenge_folder(tmp_path)
    path = root / "train" / "3_1.tif"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"3_1\.tif: cannot be read"):
        build_datalist(root)


def test_non_binary_mask(tmp_path):
    root = _challenge_folder(tmp_path)
    mask = np.zeros((20, 30))
    mask[:5], mask[5:10] = 1, 2
    _save(root / "train" / "2_1_mask.tif", mask)
    with pytest.raises(DatasetError, match=r"2_1_mask\.tif: has values \[0, 1, 2\]: a class or instance map"):
        build_datalist(root)


@pytest.mark.parametrize("foreground", [1, 255])
def test_binary_masks_of_either_convention(tmp_path, foreground):
    _save(tmp_path / "a.png", np.zeros((4, 4)))
    _save(tmp_path / "a_mask.png", np.eye(4) * foreground)
    check_item({"image": str(tmp_path / "a.png"), "label": str(tmp_path / "a_mask.png")})


def test_inference_list(tmp_path):
    root = _challenge_folder(tmp_path)
    assert len(build_inference_list(dataset_dir=root)) == 3
    assert len(build_inference_list(input_dir=root / "train")) == 6  # masks are skipped
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        build_inference_list(input_dir=tmp_path / "empty")


def test_config_stops_before_training_on_bad_data(tmp_path):
    """The error surfaces from the real config, naming the file, before any network or loader is built."""
    root = _challenge_folder(tmp_path)
    (root / "train" / "1_1_mask.tif").unlink()
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["dataset_dir"] = str(root)
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("train#dataset")
    assert isinstance(info.value.__cause__, DatasetError)
    assert "1_1.tif: image has no mask" in str(info.value.__cause__)
