"""Challenge submission writers and the reader of the inference output folder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerveseg.bundle.data import rle, submissions
from nerveseg.bundle.data.submissions import (
    read_masks_folder,
    read_nerve_submission,
    write_nerve_submission,
    write_siim_submission,
)

SHAPE = (12, 16)


def _masks(seed: int = 0, count: int = 3) -> list[np.ndarray]:
    """``count`` random 0/1 uint8 masks of ``SHAPE``, the last one empty."""
    rng = np.random.default_rng(seed)
    masks = [(rng.random(SHAPE) > 0.7).astype(np.uint8) for _ in range(count - 1)]
    return [*masks, np.zeros(SHAPE, dtype=np.uint8)]


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as stream:
        return list(csv.reader(stream))


def test_nerve_round_trip_sorted_numerically(tmp_path):
    a, b, empty = _masks()
    # ids of every accepted kind, out of order; 2 must come before 10
    given = [("10", a * 255), (2, b.astype(bool)), ("3_mask.tif", empty[None])]
    path = write_nerve_submission(given, tmp_path / "submission.csv", shape=SHAPE)
    assert path == tmp_path / "submission.csv"
    rows = _rows(path)
    assert rows[0] == ["img", "pixels"]
    assert [row[0] for row in rows[1:]] == ["2", "3", "10"]
    assert rows[2] == ["3", ""] and path.read_text().splitlines()[2] == "3,"
    assert rows[1][1] == rle.encode(b, "nerve")
    back = read_nerve_submission(path, shape=SHAPE)
    assert list(back) == [2, 3, 10]
    for key, mask in ((10, a), (2, b), (3, empty)):
        assert np.array_equal(back[key], mask)
        assert np.array_equal(rle.decode(dict(rows[1:])[str(key)], SHAPE, "nerve"), mask)


def test_nerve_round_trip_through_the_training_reader(tmp_path):
    """``rle.read_nerve_csv`` reads ``subject,img,pixels``; the same runs must decode to the same masks."""
    masks = dict(zip((1, 2, 3), _masks(seed=1), strict=True))
    path = write_nerve_submission(masks, tmp_path / "sub.csv", shape=SHAPE)
    training = tmp_path / "train_masks.csv"
    training.write_text("subject,img,pixels\n" + "".join(f"1,{i},{p}\n" for i, p in _rows(path)[1:]))
    back = rle.read_nerve_csv(training, shape=SHAPE)
    assert all(np.array_equal(back[f"1_{key}"], mask) for key, mask in masks.items())


def test_nerve_default_shape_and_num_images(tmp_path):
    mask = np.zeros((420, 580), dtype=np.uint8)
    mask[100:150, 200:260] = 255
    path = write_nerve_submission({1: mask, 2: np.zeros_like(mask)}, tmp_path / "s.csv", num_images=2)
    assert np.array_equal(read_nerve_submission(path)[1], mask // 255)
    with pytest.raises(ValueError, match=r"images 1..3; missing \[3\], unexpected \[\].*off-by-one"):
        write_nerve_submission({1: mask, 2: mask}, tmp_path / "t.csv", num_images=3)


def test_siim_round_trip_keeps_order_and_writes_minus_one(tmp_path):
    a, b, empty = _masks(seed=2)
    uids = ["1.2.276.0.7230010.3.1.4.8323329.5797.1517875190.762693", "1.2.9", "1.2.10"]
    masks = {uids[0]: a, f"{uids[1]}.png": b * 255, uids[2]: empty}
    path = write_siim_submission(masks, tmp_path / "siim.csv", shape=SHAPE)
    rows = _rows(path)
    assert rows[0] == ["ImageId", "EncodedPixels"]
    assert [row[0] for row in rows[1:]] == uids  # given order, ".png" dropped
    assert rows[3][1] == "-1" == rle.encode(empty, "siim")
    back = rle.read_siim_csv(path, shape=SHAPE)
    assert list(back) == uids
    for uid, mask in zip(uids, (a, b, empty), strict=True):
        assert np.array_equal(back[uid], mask)


def test_siim_default_shape(tmp_path):
    mask = np.zeros((1024, 1024), dtype=bool)
    mask[10:20, 30:35] = True
    back = rle.read_siim_csv(write_siim_submission([("x", mask)], tmp_path / "s.csv"))
    assert np.array_equal(back["x"], mask)


@pytest.mark.parametrize(
    "masks, match",
    [
        ([], r"no masks to write"),
        ({}, r"no masks to write"),
        ([(12, np.zeros((420, 576)))], r"image 12: mask is 420x576, the nerve challenge needs 420x580 \(invert the"),
        ([(12, np.zeros((2, 420, 580)))], r"image 12: mask is 2x420x580"),
        ([("12", np.zeros((420, 580))), (12, np.zeros((420, 580)))], r"image 12: given twice \(as '12' and 12\)"),
        ([("4.tif", np.zeros((420, 580))), ("4_mask.tif", np.zeros((420, 580)))], r"image 4: given twice"),
        ([("1_5", np.zeros((420, 580)))], r"image '1_5': .*ids are numbers"),
        ([("abc", np.zeros((420, 580)))], r"image 'abc'"),
        ([(True, np.zeros((420, 580)))], r"image True"),
        ([(0, np.zeros((420, 580)))], r"image 0: test ids start at 1"),
        ([(7, np.full((420, 580), 0.5))], r"image 7: mask has nonzero values 0.5; a mask must be bool, 0/1 or 0/255"),
        ([(7, np.eye(420, 580, dtype=np.int64)), (6, np.eye(420, 580) * 255)], None),
        ([(8, np.tile(np.array([0, 1, 255], dtype=np.uint8), (420, 194))[:, :580])], r"image 8: .*values 1, 255;"),
        ([(9, np.full((420, 580), 2))], r"image 9: mask has nonzero values 2;"),
        ([(3, "not a pair", 4)], r"\(id, mask\) pairs"),
    ],
)
def test_nerve_validation_errors(tmp_path, masks, match):
    path = tmp_path / "sub.csv"
    if match is None:  # int64 0/1 and float 0/255 masks are valid
        write_nerve_submission(masks, path)
        assert [row[0] for row in _rows(path)[1:]] == ["6", "7"]
        return
    with pytest.raises(ValueError, match=match):
        write_nerve_submission(masks, path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_siim_validation_errors(tmp_path):
    good = np.zeros((1024, 1024), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"image a: mask is 1024x1000, the pneumothorax challenge needs 1024x1024"):
        write_siim_submission({"a": np.zeros((1024, 1000))}, tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"image a: given twice"):
        write_siim_submission([("a", good), ("a.png", good)], tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"non-empty string"):
        write_siim_submission([(" ", good)], tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"image a: mask has nonzero values 3, 7"):
        bad = good + np.eye(1024, dtype=np.uint8) * 3 + np.eye(1024, k=1, dtype=np.uint8) * 7
        write_siim_submission([("a", bad)], tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"shape must be two positive integers"):
        write_siim_submission([("a", good)], tmp_path / "s.csv", shape=(1024, 0))
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_nerve_submission({1: _masks()[0]}, tmp_path / "sub.csv", shape=SHAPE)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(submissions.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_nerve_submission({1: _masks()[1], 2: _masks()[0]}, path, shape=SHAPE)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temporary file left


def test_failed_write_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_siim_submission({"a": _masks()[0]}, tmp_path / "siim.csv", shape=SHAPE)
    before = path.read_bytes()

    class Failing:
        def __init__(self, stream, **kwargs):
            self.stream = stream

        def writerow(self, row):
            self.stream.write("partial,")

        def writerows(self, rows):
            raise OSError("write failed")

    monkeypatch.setattr(submissions.csv, "writer", Failing)
    with pytest.raises(OSError, match="write failed"):
        write_siim_submission({"b": _masks()[1]}, path, shape=SHAPE)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["siim.csv"]


def test_write_creates_the_folder_and_overwrites(tmp_path):
    path = tmp_path / "deep" / "folder" / "sub.csv"
    write_nerve_submission({1: _masks()[0]}, path, shape=SHAPE)
    write_nerve_submission({5: _masks()[2]}, path, shape=SHAPE)
    assert _rows(path) == [["img", "pixels"], ["5", ""]]


def _save(path: Path, mask: np.ndarray, mode: str = "L") -> None:
    Image.fromarray(mask).convert(mode).save(path)


def test_read_masks_folder(tmp_path):
    a, b, empty = (m * 255 for m in _masks(seed=3))
    _save(tmp_path / "10_mask.tif", a)
    _save(tmp_path / "2_mask.png", b)
    _save(tmp_path / "3_mask.TIF", empty)
    _save(tmp_path / "3.tif", a)  # an image, not a mask
    _save(tmp_path / ".4_mask.partial.tif", a)  # the writer's partial file
    (tmp_path / "notes.txt").write_text("x")
    masks = read_masks_folder(tmp_path)
    assert list(masks) == ["2", "3", "10"]
    assert masks["10"].dtype == np.uint8 and masks["10"].shape == SHAPE
    assert np.array_equal(masks["10"], a) and np.array_equal(masks["2"], b) and not masks["3"].any()
    # and on into a submission
    path = write_nerve_submission(masks, tmp_path / "out" / "sub.csv", shape=SHAPE)
    back = read_nerve_submission(path, shape=SHAPE)
    assert np.array_equal(back[10], a // 255) and np.array_equal(back[2], b // 255)


def test_read_masks_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing: no such folder"):
        read_masks_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"no \*_mask.tif or \*_mask.png files"):
        read_masks_folder(tmp_path)
    (tmp_path / "5_mask.tif").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"5_mask.tif: not a readable image"):
        read_masks_folder(tmp_path)
    (tmp_path / "5_mask.tif").unlink()
    _save(tmp_path / "6_mask.png", np.zeros(SHAPE, dtype=np.uint8), mode="RGB")
    with pytest.raises(ValueError, match=r"6_mask.png: mode RGB, expected a single-channel mask"):
        read_masks_folder(tmp_path)
    _save(tmp_path / "6_mask.tif", np.zeros(SHAPE, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"image 6 has two masks"):
        read_masks_folder(tmp_path)


def test_torch_and_metatensor_masks(tmp_path):
    import torch
    from monai.data import MetaTensor

    pred = MetaTensor(torch.zeros(1, *SHAPE))  # a decollated, thresholded prediction
    pred[0, 2:5, 3:7] = 1
    path = write_nerve_submission({1: pred, 2: torch.zeros(SHAPE, dtype=torch.bool)}, tmp_path / "s.csv", shape=SHAPE)
    back = read_nerve_submission(path, shape=SHAPE)
    assert np.array_equal(back[1], pred[0].numpy().astype(np.uint8)) and not back[2].any()
