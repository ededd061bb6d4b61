"""``nerveseg prepare``: real folders in, checked PNGs and a leakage-free datalist out."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import all_items, check_prepared_pairs, check_subject_grouping, image_mask_folders
from nerveseg.bundle.data import checks, rle
from nerveseg.bundle.data.datalist import build_datalist
from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.data.prepare import prepare
from nerveseg.scripts import cli
from nerveseg.utils.errors import UserInputError


def test_nerve_layout_cleans_conflicting_duplicates(tiny_dataset, tmp_path):
    out = tmp_path / "nerve" / "datalist.json"
    report = prepare("nerve", tiny_dataset, out, num_folds=2, seed=0)
    expected = json.loads((tiny_dataset / "dataset.json").read_text())["duplicate_pairs"]
    exact = [pair for pair in report["duplicate_pairs"] if pair["kind"] == "exact"]
    assert {(p["first"], p["second"]) for p in exact} >= {
        tuple(sorted((d["with_mask"], d["without_mask"]), key=lambda s: int(s.split("_")[1]))) for d in expected
    }
    assert sorted(report["dropped_duplicates"]) == sorted(d["without_mask"] for d in expected)
    datalist = json.loads(out.read_text())
    check_prepared_pairs(out.parent, datalist)
    check_subject_grouping(datalist)
    assert sum("label" not in item for item in datalist["test"]) == 3  # the unlabelled test/ images


def test_nerve_csv_masks_give_the_same_datalist(tiny_dataset, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_dataset / "train", src / "train", ignore=shutil.ignore_patterns("*_mask.tif"))
    with open(src / "train_masks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["subject", "img", "pixels"])
        for mask_path in sorted((tiny_dataset / "train").glob("*_mask.tif")):
            subject, img, _ = mask_path.stem.split("_")
            writer.writerow([subject, img, rle.encode(np.asarray(Image.open(mask_path)), "nerve")])
    from_files = prepare("nerve", tiny_dataset, tmp_path / "a" / "datalist.json", num_folds=2)
    from_csv = prepare("nerve", src, tmp_path / "b" / "datalist.json", num_folds=2)
    assert from_csv["splits"]["training"] == from_files["splits"]["training"]
    first = json.loads((tmp_path / "a" / "datalist.json").read_text())["training"]
    second = json.loads((tmp_path / "b" / "datalist.json").read_text())["training"]
    assert [(i["image"], i["area"], i["fold"]) for i in first] == [(i["image"], i["area"], i["fold"]) for i in second]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "images" / "2.png").write_bytes(b"\x89PNG broken"), r"2\.png"),
        (lambda r: Image.fromarray(np.zeros((25, 32), np.uint8)).save(r / "masks" / "3.png"), r"3\.png.*differs"),
        (lambda r: Image.fromarray(np.arange(24 * 32).reshape(24, 32).astype(np.uint8) % 3).save(r / "masks" / "1.png"),
         r"1\.png.*a class or instance map"),
        (lambda r: (r / "masks" / "4.png").unlink(), r"4\.png"),
    ],
    ids=["corrupt-image", "size-mismatch", "values-outside-classes", "image-without-mask"],
)  # fmt: skip
def test_bad_files_stop_or_are_skipped(tmp_path, damage, message):
    src = image_mask_folders(tmp_path / "src")
    damage(src)
    with pytest.raises(DatasetError, match=message):
        prepare("folders", src, tmp_path / "out" / "datalist.json", num_folds=2)
    assert not (tmp_path / "out").exists()
    report = prepare("folders", src, tmp_path / "out" / "datalist.json", num_folds=2, skip_bad=True)
    assert len(report["bad_files"]) == 1 and report["converted"] == 5


def test_prepare_records_what_it_checked_and_runs_trust_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NERVESEG_CACHE", str(tmp_path / "cache"))
    reads = []
    for name in ("read_image", "read_mask"):
        read = getattr(checks, name)
        monkeypatch.setattr(
            checks, name, lambda path, *a, _read=read, **k: reads.append(Path(path).name) or _read(path)
        )
    out = tmp_path / "out" / "datalist.json"
    prepare("folders", image_mask_folders(tmp_path / "src"), out, num_folds=2)
    record = json.loads((out.parent / checks.RECORD_NAME).read_text())["files"]
    datalist = json.loads(out.read_text())
    for item in all_items(datalist):
        for key in ("image", "label"):
            stat = (out.parent / item[key]).stat()
            expected = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "shape": [24, 32]}
            if key == "label":
                expected["foreground"] = item["area"]
            assert record[item[key]] == expected
    moved = tmp_path / "moved"
    out.parent.rename(moved)  # the record holds relative paths: it stays valid where the folder goes
    assert len(build_datalist(datalist_file=moved / "datalist.json")["training"]) == len(datalist["training"])
    assert reads == [] and not (tmp_path / "cache").exists()  # nothing read, so nothing cached
    mask = moved / datalist["validation"][0]["label"]
    Image.fromarray((np.arange(24 * 32).reshape(24, 32) % 3).astype(np.uint8)).save(mask)
    later = mask.stat().st_mtime_ns + 10**9
    os.utime(mask, ns=(later, later))  # changed after prepare, whatever the clock's resolution
    with pytest.raises(DatasetError, match=rf"{mask.name}: has values \[0, 1, 2\]"):
        build_datalist(datalist_file=moved / "datalist.json", splits=["validation"])
    assert reads == [mask.name]


def test_malformed_csv_row(tiny_dataset, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_dataset / "train", src / "train", ignore=shutil.ignore_patterns("*_mask.tif"))
    rows = ["subject,img,pixels"] + [
        f"{p.stem.split('_')[0]},{p.stem.split('_')[1]}," for p in (src / "train").iterdir()
    ]
    rows[3] = rows[3] + "5 10 7"  # an odd count of numbers
    (src / "train_masks.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"train_masks\.csv row 4"):
        prepare("nerve", src, tmp_path / "out" / "datalist.json", num_folds=2)


def test_output_folder_of_other_files_is_refused(tmp_path):
    src = image_mask_folders(tmp_path / "src")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserInputError, match="did not write"):
        prepare("folders", src, tmp_path / "mine" / "datalist.json", num_folds=2)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_command_line(tmp_path, capsys):
    src = image_mask_folders(tmp_path / "src")
    out = tmp_path / "out" / "datalist.json"
    (src / "images" / "5.png").write_bytes(b"not a png")
    cli.prepare("folders", src=str(src), out=str(out), num_folds=2, balance=True, skip_bad=True)
    printed = capsys.readouterr().out
    assert "training" in printed and "validation" in printed and "duplicates:" in printed
    assert "skipped:" in printed and "5.png" in printed
    datalist = json.loads(out.read_text())
    positive = [item["area"] > 0 for item in datalist["training"]]
    assert sum(positive) == len(positive) - sum(positive)  # balanced 1:1


def _dicoms(root: Path) -> dict[str, np.ndarray]:
    """Four chest-like DICOMs of three patients (pydicom's bundled CT_small.dcm) and their expected masks."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    source = get_testdata_file("CT_small.dcm", download=False)
    if source is None:
        pytest.skip("pydicom's bundled test file CT_small.dcm is not installed")
    root.mkdir(parents=True)
    expected = {}
    for number, (name, patient) in enumerate([("a", "P1"), ("b", "P1"), ("c", "P2"), ("d", "P3")]):
        dataset = dcmread(source)
        dataset.PatientID = patient
        dataset.save_as(root / f"{name}.dcm")
        mask = np.zeros((dataset.Rows, dataset.Columns), dtype=bool)
        if name != "b":
            mask[10 + number : 30, 40:60] = True
        expected[name] = mask
    expected["a"][90:100, 5:9] = True  # a second region: a second CSV row
    return expected


def test_pneumothorax_dicom_and_csv(tmp_path):
    expected = _dicoms(tmp_path / "dicom")
    rows = ["ImageId, EncodedPixels"]  # the stage-1 header's leading space
    for name, mask in expected.items():
        regions = [mask.copy(), np.zeros_like(mask)] if name == "a" else [mask]
        if name == "a":
            regions[0][90:, :], regions[1][90:100, 5:9] = False, True
        rows += [f"{name},{rle.encode(region, 'siim')}" for region in regions]
    (tmp_path / "dicom" / "train-rle.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out" / "datalist.json"
    report = prepare("pneumothorax", tmp_path / "dicom", out, num_folds=2, clahe=True)
    datalist = json.loads(out.read_text())
    items = {Path(item["image"]).stem: item for item in all_items(datalist)}
    assert report["converted"] == 4
    assert report["dropped_duplicates"] == ["b"]  # the same pixels as a (same patient), with an empty mask
    assert set(items) == {"a", "c", "d"}
    for name, mask in expected.items():
        if name == "b":
            continue
        np.testing.assert_array_equal(np.asarray(Image.open(out.parent / items[name]["label"])) > 0, mask)
        assert items[name]["patient_sex"] == "O" and items[name]["patient_age"] == "000Y"
    assert items["a"]["subject"] == "P1" and items["c"]["subject"] == "P2"
    check_subject_grouping(datalist)


def test_dicom_without_pixel_data(tmp_path):
    from pydicom import dcmread

    expected = _dicoms(tmp_path / "dicom")
    broken = dcmread(tmp_path / "dicom" / "c.dcm")
    del broken.PixelData
    broken.save_as(tmp_path / "dicom" / "c.dcm")
    rows = ["ImageId,EncodedPixels"] + [f"{name},{rle.encode(mask, 'siim')}" for name, mask in expected.items()]
    (tmp_path / "dicom" / "train-rle.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"c\.dcm.*no pixel data"):
        prepare("pneumothorax", tmp_path / "dicom", tmp_path / "out" / "datalist.json", num_folds=2)
    report = prepare("pneumothorax", tmp_path / "dicom", tmp_path / "out" / "datalist.json", num_folds=2, skip_bad=True)
    assert report["converted"] == 3 and "no pixel data" in report["bad_files"][0]


def test_drive_style_names_and_field_of_view(tmp_path):
    """DRIVE: ``21_training.tif`` pairs with ``manual/21_manual1.gif``; the field-of-view mask is kept too."""
    rng = np.random.default_rng(1)
    for name in ("images", "manual", "fov"):
        (tmp_path / "drive" / name).mkdir(parents=True)
    for i in (21, 22, 23, 24):
        Image.fromarray(rng.integers(0, 255, (20, 22, 3), dtype=np.uint8)).save(
            tmp_path / f"drive/images/{i}_training.tif"
        )
        vessels = (rng.random((20, 22)) > 0.8).astype(np.uint8) * 255
        Image.fromarray(vessels).save(tmp_path / f"drive/manual/{i}_manual1.gif")
        Image.fromarray(np.pad(np.full((16, 18), 255, np.uint8), 2)).save(tmp_path / f"drive/fov/{i}_training_mask.gif")
    out = tmp_path / "out" / "datalist.json"
    prepare("folders", tmp_path / "drive", out, num_folds=2, masks="manual", image_suffix="_training",
            mask_suffix="_manual1", fov="fov", fov_suffix="_training_mask")  # fmt: skip
    items = all_items(json.loads(out.read_text()))
    assert sorted(Path(item["image"]).stem for item in items) == ["21", "22", "23", "24"]
    for item in items:
        source = np.asarray(Image.open(tmp_path / "drive" / "manual" / f"{Path(item['image']).stem}_manual1.gif")) > 0
        np.testing.assert_array_equal(np.asarray(Image.open(out.parent / item["label"])) > 0, source)
        assert np.count_nonzero(np.asarray(Image.open(out.parent / item["fov"]))) == 16 * 18


def test_nuclei_instanceimage_mask_folders(tmp_path):
    """The original nuclei layout: ``masks/{id}/`` holds one PNG per nucleus; the mask is their union."""
    src = image_mask_folders(tmp_path / "src", count=4)
    for i in range(4):
        (src / "masks" / f"{i}.png").unlink()
        (src / "masks" / str(i)).mkdir()
        for k in range(3):
            nucleus = np.zeros((24, 32), np.uint8)
            nucleus[2 + 6 * k : 6 + 6 * k, 3 + i : 9 + i] = 255
            Image.fromarray(nucleus).save(src / "masks" / str(i) / f"nucleus_{k}.png")
    out = tmp_path / "out" / "datalist.json"
    prepare("folders", src, out, num_folds=2)
    for item in all_items(json.loads(out.read_text())):
        assert item["area"] == 3 * 4 * 6


def test_image_without_csv_row_is_skippable(tiny_dataset, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_dataset / "train", src / "train", ignore=shutil.ignore_patterns("*_mask.tif"))
    rows = ["subject,img,pixels"] + [
        f"{p.stem.split('_')[0]},{p.stem.split('_')[1]}," for p in (src / "train").iterdir()
    ]
    (src / "train_masks.csv").write_text("\n".join(row for row in rows if row != "1,3,") + "\n")
    with pytest.raises(DatasetError, match=r"1_3\.tif: image has no row in"):
        prepare("nerve", src, tmp_path / "out" / "datalist.json", num_folds=2)
    report = prepare("nerve", src, tmp_path / "out" / "datalist.json", num_folds=2, skip_bad=True)
    assert len(report["bad_files"]) == 1 and "1_3.tif" in report["bad_files"][0]


# ---- given test and validation subjects (a published split) ----


def _nerve_src(root: Path, image_ext: str = ".tif", mask_ext: str = ".tif") -> dict[str, int]:
    """``train/{subject}_{frame}{image_ext}`` (RGB for JPEG) beside ``_mask{mask_ext}``; return each mask's area."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    areas = {}
    for subject in range(1, 5):
        for frame in (1, 2):
            name = f"{subject}_{frame}"
            shape = (24, 32, 3) if image_ext == ".jpg" else (24, 32)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / "train" / f"{name}{image_ext}")
            mask = np.zeros((24, 32), np.uint8)
            mask[4:12, 3 + 2 * subject : 14 + 2 * subject] = 255 * (frame == 1)
            Image.fromarray(mask).save(root / "train" / f"{name}_mask{mask_ext}")
            areas[name] = int(np.count_nonzero(mask))
    return areas


def _areas(out: Path) -> dict[str, int]:
    datalist = json.loads(out.read_text())
    return {Path(item["image"]).stem: item["area"] for item in all_items(datalist) if "label" in item}


def test_nerve_rgb_jpeg_images_pair_with_tiff_masks(tmp_path):
    areas = _nerve_src(tmp_path / "src", image_ext=".jpg")
    out = tmp_path / "out" / "datalist.json"
    prepare("nerve", tmp_path / "src", out, num_folds=2)
    assert _areas(out) == areas


def test_nerve_jpeg_masks_need_and_take_a_mask_threshold(tmp_path):
    areas = _nerve_src(tmp_path / "src", mask_ext=".jpg")
    out = tmp_path / "out" / "datalist.json"
    with pytest.raises(DatasetError, match=r"1_1_mask\.jpg: has values .*: a lossy JPEG mask: threshold it, `nerveseg"):
        prepare("nerve", tmp_path / "src", out, num_folds=2)
    report = prepare("nerve", tmp_path / "src", out, num_folds=2, mask_threshold=128)
    assert _areas(out) == areas and report["parameters"]["mask_threshold"] == 128
    check_prepared_pairs(out.parent, json.loads(out.read_text()))


def test_nerve_image_without_mask_names_what_was_tried_and_found(tmp_path):
    src = tmp_path / "src"
    _nerve_src(src)
    (src / "train" / "2_2_mask.tif").unlink()
    with pytest.raises(DatasetError, match=r"2_2\.tif: image has no mask \(tried 2_2_mask\.\* with \.png") as info:
        prepare("nerve", src, tmp_path / "out" / "datalist.json", num_folds=2)
    assert "holds 7 other mask files (e.g. 1_1_mask.tif, 1_2_mask.tif)" in str(info.value)
    report = prepare("nerve", src, tmp_path / "out" / "datalist.json", num_folds=2, skip_bad=True)
    assert len(report["bad_files"]) == 1 and report["converted"] == 7
    for mask in (src / "train").glob("*_mask.tif"):
        mask.unlink()
    with pytest.raises(DatasetError, match=r"holds no \*_mask\.\* file at all: .*`--csv_file train_masks\.csv`"):
        prepare("nerve", src, tmp_path / "other" / "datalist.json", num_folds=2)


def test_folders_mask_threshold_excludes_target_class(tmp_path):
    src = image_mask_folders(tmp_path / "src")
    with pytest.raises(ValueError, match=r"target_class=1, threshold=128: choose one way"):
        prepare("folders", src, tmp_path / "out" / "datalist.json", num_folds=2, target_class=1, mask_threshold=128)
