from __future__ import annotations

import re

import numpy as np
import pytest

from nerveseg.bundle.data.rle import STYLES, decode, encode, read_nerve_csv, read_siim_csv

# A hand-made 3x4 mask. Column-major pixel order (0-based) runs down each column in turn:
# column 0 -> 0, 1, 2; column 1 -> 3, 4, 5; ... so the foreground is pixels 0-1, 4-5 and 9-10.
HAND = np.array(
    [
        [1, 0, 0, 1],
        [1, 1, 0, 1],
        [0, 1, 0, 0],
    ],
    dtype=np.uint8,
)
HAND_NERVE = "1 2 5 2 10 2"
HAND_SIIM = "0 2 2 2 3 2"


def _random_masks():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 7), (7, 1), (5, 3), (420, 580)]
    shapes += [tuple(int(n) for n in rng.integers(1, 40, size=2)) for _ in range(10)]
    for shape in shapes:
        for density in (0.0, 0.01, 0.5, 1.0):
            yield rng.random(shape) < density
    wrap = np.zeros((6, 5), dtype=bool)  # runs that cross column boundaries
    wrap[4:, 0] = wrap[:2, 1] = True
    wrap[5, 2] = wrap[:, 3] = wrap[0, 4] = True
    yield wrap
    yield np.ones((6, 5), dtype=bool) ^ wrap


@pytest.mark.parametrize("style", STYLES)
def test_round_trip(style):
    for mask in _random_masks():
        text = encode(mask, style)
        decoded = decode(text, mask.shape, style)
        assert decoded.dtype == np.uint8 and decoded.shape == mask.shape
        np.testing.assert_array_equal(decoded, mask.astype(np.uint8))
        assert encode(decoded, style) == text


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
def test_known_vectors(dtype):
    mask = HAND.astype(dtype) * (255 if dtype is np.uint8 else 1)
    assert encode(mask, "nerve") == HAND_NERVE
    assert encode(mask, "siim") == HAND_SIIM
    np.testing.assert_array_equal(decode(HAND_NERVE, (3, 4), "nerve"), HAND)
    np.testing.assert_array_equal(decode(HAND_SIIM, (3, 4), "siim"), HAND)


def test_single_pixel_is_column_major():
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[1, 0] = 1
    assert encode(mask, "nerve") == "2 1"
    assert encode(mask, "siim") == "1 1"
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[0, 1] = 1  # the first pixel of the second column
    assert encode(mask, "nerve") == "4 1"
    assert encode(mask, "siim") == "3 1"


def test_empty_and_full():
    empty, full = np.zeros((3, 4), dtype=np.uint8), np.ones((3, 4), dtype=np.uint8)
    assert encode(empty, "nerve") == ""
    assert encode(empty, "siim") == "-1"
    assert encode(full, "nerve") == "1 12"
    assert encode(full, "siim") == "0 12"
    np.testing.assert_array_equal(decode("", (3, 4), "nerve"), empty)
    np.testing.assert_array_equal(decode(" -1 ", (3, 4), "siim"), empty)
    np.testing.assert_array_equal(decode("1 12", (3, 4), "nerve"), full)
    np.testing.assert_array_equal(decode("0 12", (3, 4), "siim"), full)


def test_adjacent_runs_decode_to_their_union():
    np.testing.assert_array_equal(decode("1 2 3 2", (2, 2), "nerve"), np.ones((2, 2)))
    np.testing.assert_array_equal(decode("0 2 0 2", (2, 2), "siim"), np.ones((2, 2)))


def test_styles_are_not_interchangeable():
    # Both hand strings fail in the other style: siim "0 ..." is before the first nerve pixel, nerve runs overflow.
    with pytest.raises(ValueError, match="before the first pixel"):
        decode(HAND_SIIM, (3, 4), "nerve")
    with pytest.raises(ValueError, match="past the image end"):
        decode(HAND_NERVE, (3, 4), "siim")
    # Here both decode, but to a different mask.
    mask = np.zeros((5, 5), dtype=np.uint8)
    mask.T.flat[[2, 10, 11]] = 1  # column-major pixels 2 and 10-11
    assert encode(mask, "nerve") == "3 1 11 2"
    assert encode(mask, "siim") == "2 1 7 2"
    assert not np.array_equal(decode(encode(mask, "nerve"), (5, 5), "siim"), mask)
    assert not np.array_equal(decode(encode(mask, "siim"), (5, 5), "nerve"), mask)
    # And on random masks with 2+ runs: always an error or a different mask.
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = (rng.random((9, 7)) < 0.3).astype(np.uint8)
        for style, other in (("nerve", "siim"), ("siim", "nerve")):
            try:
                assert not np.array_equal(decode(encode(mask, style), mask.shape, other), mask)
            except ValueError:
                pass


NAME = "train_masks.csv row 17 (1_5)"


@pytest.mark.parametrize(
    "text, style, problem",
    [
        ("1 2 3", "nerve", "3 tokens, expected an even number"),
        ("1 x", "nerve", "token 2 ('x') is not an integer"),
        ("1.5 2", "siim", "token 1 ('1.5') is not an integer"),
        ("-3 2", "siim", "token 1 (-3) is negative"),
        ("2 -1", "nerve", "token 2 (-1) is negative"),
        ("1 2 5 0", "nerve", "run 2 (start 5, length 0) has zero length"),
        ("0 0", "siim", "run 1 (gap 0, length 0) has zero length"),
        ("0 2", "nerve", "run 1 (start 0, length 2) starts before the first pixel"),
        ("11 3", "nerve", "run 1 (start 11, length 3) ends at 0-based pixel 12, past the image end (12 pixels"),
        ("1 2 6 5", "siim", "run 2 (gap 6, length 5) ends at 0-based pixel 13, past the image end"),
        ("123456789012345678901234 1", "nerve", "token 1 (123456789012345678901234) is larger than the image"),
        ("5 3 6 1", "nerve", "run 2 (start 6, length 1) starts before the previous run ends"),
        ("8 1 2 1", "nerve", "run 2 (start 2, length 1) starts before the previous run ends"),
        ("-1", "nerve", "'-1' is the siim-style empty mask"),
        ("", "siim", "'' is the nerve-style empty mask"),
        ("  ", "siim", "'' is the nerve-style empty mask"),
    ],
)
def test_decode_errors_name_the_source_and_problem(text, style, problem):
    with pytest.raises(ValueError, match=re.escape(NAME) + ".*" + re.escape(problem)):
        decode(text, (3, 4), style, name=NAME)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Unknown RLE style 'kaggle'.*\('nerve', 'siim'\)"):
        encode(HAND, "kaggle")
    with pytest.raises(ValueError, match=r"Unknown RLE style 'Nerve'"):
        decode(HAND_NERVE, (3, 4), "Nerve")
    with pytest.raises(ValueError, match=r"2D \(H, W\) mask, got shape \(1, 3, 4\)"):
        encode(HAND[None], "nerve")
    with pytest.raises(ValueError, match="shape must be two positive integers"):
        decode(HAND_NERVE, (12,), "nerve")
    with pytest.raises(ValueError, match="RLE string: 3 tokens"):
        decode("1 2 3", (3, 4), "nerve")


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_nerve_csv(tmp_path):
    path = _write(tmp_path / "train_masks.csv", ["subject,img,pixels", f"1,1,{HAND_NERVE}", "1,2,", "10,3,12 1"])
    masks = read_nerve_csv(path, shape=(3, 4))
    assert list(masks) == ["1_1", "1_2", "10_3"]
    np.testing.assert_array_equal(masks["1_1"], HAND)
    assert masks["1_2"].shape == (3, 4) and not masks["1_2"].any()
    assert masks["10_3"][2, 3] == 1 and masks["10_3"].sum() == 1


def test_read_siim_csv(tmp_path):
    lines = ["ImageId, EncodedPixels", "a, 0 2", "b, -1", "a, 9 2", f"c,{HAND_SIIM}"]
    masks = read_siim_csv(_write(tmp_path / "train-rle.csv", lines), shape=(3, 4))
    assert list(masks) == ["a", "b", "c"]
    expected = np.zeros((3, 4), dtype=np.uint8)
    expected.T.flat[[0, 1, 9, 10]] = 1  # the union of the two rows for "a"
    np.testing.assert_array_equal(masks["a"], expected)
    assert masks["a"].dtype == np.uint8
    assert not masks["b"].any()
    np.testing.assert_array_equal(masks["c"], HAND)


@pytest.mark.parametrize(
    "reader, lines, message",
    [
        (read_nerve_csv, ["subject,img,pixels", "1,1,", "1,2,1 2,3"], "row 3: 4 fields, expected 3"),
        (read_nerve_csv, ["subject,img,pixels", "1,1,", "1,2,1 2 3"], "row 3 (1_2): 3 tokens"),
        (read_nerve_csv, ["subject,img,pixels", "1,1,", "1,2,", "1,1,1 1"], "row 4: id 1_1 already appeared in row 2"),
        (read_nerve_csv, ["subject,image,pixels", "1,1,"], "row 1: header ['subject', 'image', 'pixels'] lacks"),
        (read_nerve_csv, ["subject,img,pixels", "1,1,-1"], "row 2 (1_1): '-1' is the siim-style empty mask"),
        (read_siim_csv, ["ImageId,EncodedPixels", "a,-1", "b"], "row 3: 1 fields, expected 2"),
        (read_siim_csv, ["ImageId,EncodedPixels", "a,-1", "b,0 2 x 1"], "row 3 (b): token 3 ('x') is not an integer"),
        (read_siim_csv, ["ImageId,EncodedPixels", "a,"], "row 2 (a): '' is the nerve-style empty mask"),
        (read_siim_csv, ["ImageId", "a"], "row 1: header ['ImageId'] lacks column(s) ['EncodedPixels']"),
        (read_siim_csv, [""], "row 1: header [] lacks column(s) ['ImageId', 'EncodedPixels']"),
    ],
)
def test_csv_errors_name_file_and_row(tmp_path, reader, lines, message):
    path = _write(tmp_path / "masks.csv", lines)
    with pytest.raises(ValueError, match=re.escape(f"{path} {message}")):
        reader(path, shape=(3, 4))


@pytest.mark.parametrize("reader", [read_nerve_csv, read_siim_csv])
def test_csv_missing_file(tmp_path, reader):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'nope.csv'}: no such file")):
        reader(tmp_path / "nope.csv")
