"""Datalists: pairing, subject-grouped splits, one clear error per bad file, checks that skip what was checked."""

from __future__ import annotations

import ast
import json
import os

import numpy as np
import pytest
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from conftest import CONFIGS
from nerveseg.bundle.data import checks, datalist
from nerveseg.bundle.data.checks import DataChecker, cache_folder, check_item
from nerveseg.bundle.data.datalist import (
    build_datalist,
    build_inference_list,
    find_pairs,
    load_datalist_file,
    split_by_subject,
    subject_of,
)
from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.data.synthetic import SYNTHETIC_VERSION


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts with an empty check cache of its own."""
    monkeypatch.setenv("NERVESEG_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files the checks read, in order."""
    files: list[str] = []
    for name in ("read_image", "read_mask"):
        reader = getattr(checks, name)
        monkeypatch.setattr(
            checks, name, lambda path, *a, _read=reader, **k: files.append(str(path)) or _read(path, *a, **k)
        )
    return files


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
    datalist = build_datalist(_challenge_folder(tmp_path / "data"), val_fraction=0.34, seed=1)
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


def test_no_data_set_names_the_keys_and_the_quick_start():
    with pytest.raises(DatasetError, match=r"dataset_dir.*datalist_file.*configs/quickstart\.json") as info:
        build_datalist()
    assert "--config_file \"['configs/train.json','configs/quickstart.json']\"" in str(info.value)
    with pytest.raises(DatasetError, match=r"input_dir.*dataset_dir.*'configs/inference.json','configs/quickstart"):
        build_inference_list()


def test_real_data_path_does_not_import_the_synthetic_generator():
    for module in (datalist, checks):
        tree = ast.parse(open(module.__file__).read())
        imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not [name for name in imported if "synthetic" in name], module.__name__


def test_quickstart_names_the_synthetic_data_and_the_command_line_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NERVESEG_CACHE", str(tmp_path))
    synthetic = tmp_path / f"synthetic-v{SYNTHETIC_VERSION}"
    synthetic.mkdir()
    (synthetic / "dataset.json").write_text("{}")  # an existing cache: nothing is generated
    stack = [str(CONFIGS / "train.json"), str(CONFIGS / "quickstart.json")]
    parser = ConfigParser()
    parser.read_config(stack)
    assert parser.get_parsed_content("dataset_dir") == synthetic
    root = _challenge_folder(tmp_path / "mine")
    workflow = ConfigWorkflow(config_file=stack, workflow_type=None, dataset_dir=str(root))  # as --dataset_dir
    assert {item["subject"] for item in workflow.parser.get_parsed_content("datalist")["training"]} <= {"1", "2", "3"}


def test_second_run_reads_nothing_and_writes_nothing_into_the_data(tmp_path, reads):
    root = _challenge_folder(tmp_path / "data")
    before = sorted(root.rglob("*"))
    first = build_datalist(root, val_fraction=0.34, splits=["training", "validation", "test"])
    assert len(reads) == 12  # 6 images, 6 masks; the 3 unlabelled test images are read by inference, not here
    reads.clear()
    assert build_datalist(root, val_fraction=0.34, splits=["training", "validation", "test"]) == first
    assert reads == []
    assert sorted(root.rglob("*")) == before
    (record,) = cache_folder().iterdir()
    assert json.loads(record.read_text())["root"] == str(root)


def test_changed_or_missing_file_is_read_again_and_named(tmp_path, reads):
    root = _challenge_folder(tmp_path / "data")
    build_datalist(root)
    reads.clear()
    mask_path = root / "train" / "2_1_mask.tif"
    mask = np.zeros((20, 30))
    mask[:5], mask[5:10] = 1, 2
    _save(mask_path, mask)
    later = mask_path.stat().st_mtime_ns + 10**9
    os.utime(mask_path, ns=(later, later))  # the clock may not tick between the two writes
    with pytest.raises(DatasetError, match=r"2_1_mask\.tif: has values \[0, 1, 2\]"):
        build_datalist(root)
    assert [os.path.basename(path) for path in reads] == ["2_1_mask.tif"]
    (root / "train" / "1_1.tif").unlink()
    with pytest.raises(DatasetError, match=r"1_1\.tif: no such file"):
        check_item({"image": str(root / "train" / "1_1.tif")}, DataChecker.for_folder(root))


def test_size_mismatch_found_from_the_record(tmp_path, reads):
    root = _challenge_folder(tmp_path / "data")
    build_datalist(root)
    reads.clear()
    _save(root / "train" / "1_2_mask.tif", np.zeros((21, 30)))
    with pytest.raises(DatasetError, match=r"1_2_mask\.tif: mask size 30x21 differs from its image .*1_2\.tif"):
        build_datalist(root)
    assert [os.path.basename(path) for path in reads] == ["1_2_mask.tif"]  # the image's size came from the record


def test_evaluation_checks_only_the_validation_split(tmp_path, reads):
    root = _challenge_folder(tmp_path / "data", subjects=4)
    split = build_datalist(root, val_fraction=0.25, seed=2, splits=["validation"])  # no record: masks for the split
    masks = [path for path in reads if path.endswith("_mask.tif")]
    assert len(masks) == 8 and len(reads) == 8 + 2  # every mask, and the 2 validation images
    assert split == build_datalist(root, val_fraction=0.25, seed=2)  # the same subjects as a training run's
    lists = {
        "training": [{"image": "train/1_1.tif", "label": "train/1_1_mask.tif"}],
        "validation": [{"image": "train/3_1.tif", "label": "train/3_1_mask.tif"}],
    }
    (root / "datalist.json").write_text(json.dumps(lists))
    for record in cache_folder().iterdir():
        record.unlink()  # the same folder's record: forget it, so that what the run reads shows
    reads.clear()
    build_datalist(datalist_file=root / "datalist.json", splits=["validation"])
    assert sorted(os.path.basename(path) for path in reads) == ["3_1.tif", "3_1_mask.tif"]
    with pytest.raises(ValueError, match="splits must name some of"):
        build_datalist(root, splits=["train"])


def test_unwritable_cache_is_only_a_warning(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("NERVESEG_CACHE", str(blocker))
    assert len(build_datalist(_challenge_folder(tmp_path / "data"))["validation"]) > 0
    assert "could not save the data check record" in caplog.text


# ---- masks beside their images in another format, lossy masks, labelled test lists ------------------------------


def test_mask_pairs_across_extensions_preferring_the_images_own(tmp_path):
    """An RGB ``1_1.jpg`` pairs with ``1_1_mask.tif``; with two masks, the one of the image's extension wins."""
    root = _challenge_folder(tmp_path / "data")
    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3))
    _save(root / "train" / "1_1.jpg", rgb)
    (root / "train" / "1_1.tif").unlink()
    _save(root / "train" / "2_1_mask.png", np.zeros((20, 30)))  # beside 2_1_mask.tif
    labels = {os.path.basename(p["image"]): os.path.basename(p["label"]) for p in find_pairs(root / "train")}
    assert labels["1_1.jpg"] == "1_1_mask.tif" and labels["2_1.tif"] == "2_1_mask.tif"
    assert len(build_datalist(root, splits=["training", "validation", "test"])["training"]) > 0


def test_image_without_mask_names_the_masks_tried_and_found(tmp_path):
    root = _challenge_folder(tmp_path)
    (root / "train" / "2_2_mask.tif").unlink()
    with pytest.raises(
        DatasetError, match=r"2_2\.tif: image has no mask \(tried 2_2_mask\.\* with \.png, \.tif"
    ) as info:
        build_datalist(root)
    assert "holds 5 other mask files (e.g. 1_1_mask.tif, 1_2_mask.tif)" in str(info.value)
    (root / "train" / "2_2_mask.npy").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"2_2_mask\.npy is in none of these formats: convert it"):
        build_datalist(root)


def test_folder_without_any_mask_says_where_masks_may_be(tmp_path):
    root = _challenge_folder(tmp_path)
    for mask in (root / "train").glob("*_mask.tif"):
        mask.unlink()
    with pytest.raises(DatasetError, match=r"1_1\.tif: image has no mask .* holds no \*_mask\.\* file at all") as info:
        build_datalist(root)
    assert "datalist_file" in str(info.value) and "`nerveseg prepare folders`" in str(info.value)


def _jpeg_masks(root):
    """The challenge folder with its masks saved as JPEGs, whose pixels scatter around 0 and 255."""
    for mask in (root / "train").glob("*_mask.tif"):
        Image.open(mask).save(mask.with_suffix(".jpg"), quality=75)
        mask.unlink()
    return root


def test_mask_threshold_reads_lossy_masks_and_is_part_of_the_record(tmp_path, reads):
    root = _jpeg_masks(_challenge_folder(tmp_path / "data"))
    with pytest.raises(DatasetError, match=r"_mask\.jpg: has values .*: a lossy JPEG mask: threshold it"):
        build_datalist(root)
    reads.clear()
    first = build_datalist(root, mask_threshold=128)
    assert len([path for path in reads if path.endswith("_mask.jpg")]) == 6
    (record,) = cache_folder().iterdir()
    entries = json.loads(record.read_text())["files"]
    assert {entries[f"train/{s}_{f}_mask.jpg"]["threshold"] for s in (1, 2, 3) for f in (1, 2)} == {128}
    assert {entries[f"train/{s}_{f}_mask.jpg"]["foreground"] for s in (1, 2, 3) for f in (1, 2)} == {0, 35}
    reads.clear()
    assert build_datalist(root, mask_threshold=128) == first and reads == []  # the same threshold: reused
    build_datalist(root, mask_threshold=100)
    assert len(reads) == 6 and all(path.endswith("_mask.jpg") for path in reads)  # another threshold: read again
    with pytest.raises(DatasetError, match="lossy JPEG"):  # no threshold: a thresholded record vouches for nothing
        build_datalist(root)


def test_check_item_with_a_thresholding_checker(tmp_path):
    _save(tmp_path / "a.png", np.zeros((20, 30)))
    mask = np.zeros((20, 30), np.uint8)
    mask[5:12, 6:20] = 255
    Image.fromarray(mask).save(tmp_path / "a_mask.jpg", quality=75)
    item = {"image": str(tmp_path / "a.png"), "label": str(tmp_path / "a_mask.jpg")}
    assert check_item(item, DataChecker(mask_threshold=128)) == 7 * 14
    with pytest.raises(DatasetError, match="lossy JPEG"):
        check_item(item)


def test_labelled_test_items_resolve_against_the_base_folder(tmp_path, monkeypatch):
    root = _challenge_folder(tmp_path / "data")
    lists = {
        "training": [{"image": "train/1_1.tif", "label": "train/1_1_mask.tif"}],
        "validation": [{"image": "train/2_1.tif", "label": "train/2_1_mask.tif"}],
        "test": [
            {"image": "train/3_1.tif", "label": "train/3_1_mask.tif", "subject": "3"},
            {"image": "test/1.tif"},
            {"image": "train/3_2.tif", "label": "masks/3_2.png"},  # missing: named by its full path
        ],
    }
    (root / "datalist.json").write_text(json.dumps(lists))
    monkeypatch.chdir(tmp_path)  # a relative label must not be looked up in the working folder
    test = load_datalist_file(root / "datalist.json")["test"]
    assert [item.get("label") for item in test] == [str(root / "train/3_1_mask.tif"), None, str(root / "masks/3_2.png")]
    assert test[0]["image"] == str(root / "train/3_1.tif") and test[0]["subject"] == "3"
    with pytest.raises(DatasetError, match=rf"{root / 'masks' / '3_2.png'}: no such file"):
        build_datalist(datalist_file=root / "datalist.json", splits=["test"])
