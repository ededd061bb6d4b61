"""Exact and near-duplicate frames within a subject, conflicting masks, and the drop policies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from nerveseg.bundle.data.duplicates import NEAR_THRESHOLD, DuplicatePair, drop_duplicates, find_duplicates
from nerveseg.bundle.data.synthetic import generate_dataset

USGRA = SHARED_DATA / "usgra_seg"


def _items(root: Path, subjects: int = 4, frames: int = 10) -> list[dict]:
    train = root / "train"
    return [
        {"image": str(train / f"{s}_{f}.tif"), "label": str(train / f"{s}_{f}_mask.tif"), "subject": str(s)}
        for s in range(1, subjects + 1)
        for f in range(1, frames + 1)
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dup") / "synthetic"
    return generate_dataset(
        root, num_subjects=4, frames_per_subject=10, num_test_images=0, seed=0, image_shape=(64, 96)
    )


@pytest.fixture(scope="module")
def found(dataset) -> tuple[list[dict], list[DuplicatePair], list[dict]]:
    known = json.loads((dataset / "dataset.json").read_text())["duplicate_pairs"]
    assert known, "the synthetic dataset should hold at least one conflicting duplicate"
    items = _items(dataset)
    return items, find_duplicates(items), known


def _name(path: str) -> str:
    return Path(path).stem


def test_every_known_duplicate_is_an_exact_conflicting_pair(found):
    items, pairs, known = found
    by_members = {frozenset((_name(p.first), _name(p.second))): p for p in pairs}
    for entry in known:
        pair = by_members[frozenset((entry["with_mask"], entry["without_mask"]))]
        assert pair.kind == "exact" and pair.distance == 0.0 and pair.mask_dice == 0.0 and pair.conflicting
        areas = {_name(pair.first): pair.first_area, _name(pair.second): pair.second_area}
        assert areas[entry["with_mask"]] > 0 and areas[entry["without_mask"]] == 0
    subject = {item["image"]: item["subject"] for item in items}
    order = [item["image"] for item in items]
    for pair in pairs:
        assert subject[pair.first] == subject[pair.second]
        assert order.index(pair.first) < order.index(pair.second)
        assert pair.kind == "exact" or 0.0 < pair.distance <= NEAR_THRESHOLD


def test_policies_drop_the_right_files(found):
    items, pairs, known = found
    conflicting = [p for p in pairs if p.conflicting]
    kept, dropped = drop_duplicates(items, pairs)
    assert len(kept) + len(dropped) == len(items)
    empty = {p.first if p.first_area == 0 else p.second for p in conflicting if min(p.first_area, p.second_area) == 0}
    assert {item["image"] for item in dropped} == empty
    assert {_name(item["image"]) for item in dropped} >= {entry["without_mask"] for entry in known}
    assert kept == [item for item in items if item not in dropped]  # original order
    _, dropped = drop_duplicates(items, pairs, "drop_both")
    assert {item["image"] for item in dropped} == {m for p in conflicting for m in (p.first, p.second)}
    assert drop_duplicates(items, pairs, "keep") == (items, [])


def test_only_conflicting_pairs_cause_drops():
    items = [{"image": name} for name in ("a", "b", "c", "d", "e", "f")]
    pairs = [
        DuplicatePair("a", "b", "exact", 0.0, 0.0, True, 0, 50),  # empty vs annotated
        DuplicatePair("c", "d", "near", 0.005, 0.2, True, 40, 60),  # both annotated, disagreeing
        DuplicatePair("e", "f", "near", 0.005, 0.9, False, 40, 45),  # agreeing
    ]
    assert [i["image"] for i in drop_duplicates(items, pairs)[1]] == ["a"]
    assert [i["image"] for i in drop_duplicates(items, pairs, "drop_both")[1]] == ["a", "b", "c", "d"]


def test_copies_pair_within_a_subject_only(dataset, tmp_path):
    items = _items(dataset)
    copy = tmp_path / "copy.tif"
    shutil.copy(items[0]["image"], copy)
    elsewhere = {"image": str(copy), "label": items[0]["label"], "subject": "2"}
    pairs = find_duplicates([*items, elsewhere])
    assert not any(str(copy) in (p.first, p.second) for p in pairs)
    same = {**elsewhere, "subject": items[0]["subject"]}
    pairs = find_duplicates([*items, same])
    match = [p for p in pairs if p.second == str(copy)]
    assert [(p.first, p.kind, p.mask_dice, p.conflicting) for p in match] == [(items[0]["image"], "exact", 1.0, False)]


def test_a_lightly_noised_copy_is_a_near_pair(dataset, tmp_path):
    items = _items(dataset)
    source = next(item for item in items if np.asarray(Image.open(item["label"])).any())  # an annotated frame
    pixels = np.asarray(Image.open(source["image"])).astype(np.int16)
    rng = np.random.default_rng(0)
    noise = rng.integers(-1, 2, pixels.shape) * (rng.random(pixels.shape) < 0.25)  # +-1 gray level on a quarter
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(tmp_path / "noisy.tif")
    Image.fromarray(np.zeros(pixels.shape, dtype=np.uint8)).save(tmp_path / "noisy_mask.tif")
    noisy = {"image": str(tmp_path / "noisy.tif"), "label": str(tmp_path / "noisy_mask.tif")}
    noisy["subject"] = source["subject"]
    pairs = find_duplicates([*items, noisy])
    pair = next(p for p in pairs if (p.first, p.second) == (source["image"], noisy["image"]))
    assert pair.kind == "near" and 0.0 < pair.distance <= NEAR_THRESHOLD, pair.distance  # measured 0.003
    assert pair.conflicting and pair.mask_dice == 0.0
    assert noisy in drop_duplicates([*items, noisy], pairs)[1]


def test_errors(dataset, tmp_path):
    items = _items(dataset, subjects=1, frames=2)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.tif"):
        find_duplicates([*items, {"image": str(broken), "label": items[0]["label"], "subject": "1"}])
    with pytest.raises(ValueError, match="'subject' and 'label'"):
        find_duplicates([{"image": items[0]["image"]}])
    with pytest.raises(ValueError, match="near_threshold >= 0"):
        find_duplicates(items, near_threshold=-1.0)
    with pytest.raises(ValueError, match="drop_negative.*drop_both.*keep.*got 'drop_all'"):
        drop_duplicates(items, [], policy="drop_all")


@pytest.mark.skipif(not USGRA.is_dir(), reason=f"real nerve ultrasound data not present at {USGRA}")
def test_real_nerve_images_as_one_subject():
    images = sorted((USGRA / "images").glob("*.png"))
    items = [{"image": str(p), "label": str(USGRA / "masks" / p.name), "subject": "all"} for p in images]
    pairs = find_duplicates(items)
    print(f"USGRA-seg, {len(items)} images as one subject: {[(p.kind, round(p.distance, 4)) for p in pairs]}")
    assert any(p.kind == "exact" for p in pairs)  # 0043.png and 0077.png hold the same pixels
    assert all(p.kind in ("exact", "near") for p in pairs)
