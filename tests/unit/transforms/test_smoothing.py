"""Erosion Mask Smoothing: soft targets 1 - eps inside, 1 on the ring, 0 outside."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted, Compose, Resized

from nerveseg.transforms.smoothing import (
    ErosionMaskSmoothing,
    ErosionMaskSmoothingD,
    ErosionMaskSmoothingd,
    ErosionMaskSmoothingDict,
)

EPS = 12 / 255
INTERIOR = torch.tensor(1 - EPS, dtype=torch.float32)


def _square(size: int = 20, lo: int = 4, hi: int = 16) -> torch.Tensor:
    mask = torch.zeros(1, size, size)
    mask[:, lo:hi, lo:hi] = 1
    return mask


def _blob() -> torch.Tensor:
    """A disc of radius 20 and an overlapping rectangle in 64x64."""
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    mask = ((yy - 30) ** 2 + (xx - 28) ** 2 <= 20**2).float()
    mask[40:60, 30:62] = 1
    return mask[None]


def test_square_interior_ring_and_outside_exact():
    mask = _square()  # side 12: rows and columns 4..15
    out = ErosionMaskSmoothing(kernel_size=3, iterations=1, eps=EPS)(mask)
    assert out.dtype == torch.float32 and out.shape == (1, 20, 20)
    expected = mask.clone()
    expected[:, 5:15, 5:15] = INTERIOR  # one 3x3 erosion removes a one-pixel ring
    assert torch.equal(out, expected)
    assert int((out == INTERIOR).sum()) == 100
    assert int((out == 1).sum()) == 144 - 100
    assert int((out == 0).sum()) == 400 - 144


def test_defaults_are_the_seeds_code():
    smoother = ErosionMaskSmoothing()
    assert (smoother.kernel_size, smoother.iterations, smoother.eps) == (9, 3, pytest.approx(12 / 255))
    # A 40x40 square loses 12 pixels on each side under a 25x25 erosion: a 16x16 interior.
    out = smoother(_square(size=64, lo=12, hi=52))
    assert int((out == INTERIOR).sum()) == 16 * 16


def test_three_9x9_erosions_equal_one_25x25():
    mask = _blob()
    repeated = ErosionMaskSmoothing(kernel_size=9, iterations=3)(mask)
    single = ErosionMaskSmoothing(kernel_size=25, iterations=1)(mask)
    assert torch.equal(repeated, single)
    interior = int((repeated == INTERIOR).sum())
    assert 0 < interior < int(mask.sum())


def test_mask_touching_the_edge_is_not_eroded_from_the_edge():
    mask = torch.zeros(1, 20, 20)
    mask[:, :10, :10] = 1  # touches the top and left edges
    out = ErosionMaskSmoothing(kernel_size=3, iterations=1)(mask)
    expected = mask.clone()
    expected[:, :9, :9] = INTERIOR  # eroded only from the bottom and right edges inside the image
    assert torch.equal(out, expected)
    full = ErosionMaskSmoothing(kernel_size=9, iterations=3)(torch.ones(1, 8, 8))
    assert torch.equal(full, torch.full((1, 8, 8), float(INTERIOR)))


def test_eps_zero_is_identity_and_iterations_zero_is_whole_mask():
    mask = _blob()
    off = ErosionMaskSmoothing(eps=0.0)
    assert off(mask) is mask
    assert torch.equal(off(mask), _blob())
    whole = ErosionMaskSmoothing(iterations=0)(mask)
    assert torch.equal(whole, torch.where(mask > 0, INTERIOR, mask))


def test_empty_mask_stays_zero():
    out = ErosionMaskSmoothing()(torch.zeros(1, 16, 16))
    assert out.dtype == torch.float32 and not out.any()


def test_input_types_are_kept():
    meta = {"filename_or_obj": "1_1_mask.tif", "spatial_shape": (20, 20)}
    mask = MetaTensor(_square().to(torch.uint8), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])), meta=meta)
    out = ErosionMaskSmoothing(kernel_size=3, iterations=1)(mask)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert out.meta["filename_or_obj"] == "1_1_mask.tif"
    assert torch.equal(out.affine, mask.affine)
    assert torch.equal(out.as_tensor()[:, 5:15, 5:15], torch.full((1, 10, 10), float(INTERIOR)))
    as_numpy = ErosionMaskSmoothing(kernel_size=3, iterations=1)(_square().numpy().astype(bool))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32
    np.testing.assert_array_equal(as_numpy, out.as_tensor().numpy())


def test_channels_are_smoothed_separately():
    mask = torch.cat([_square(), torch.zeros(1, 20, 20), _square(lo=0, hi=20)])
    out = ErosionMaskSmoothing(kernel_size=3, iterations=1)(mask)
    smoother = ErosionMaskSmoothing(kernel_size=3, iterations=1)
    for c in range(3):
        assert torch.equal(out[c : c + 1], smoother(mask[c : c + 1]))
    assert not out[1].any()
    assert torch.equal(out[2], torch.full((20, 20), float(INTERIOR)))


def test_dictionary_form_touches_only_its_keys():
    assert ErosionMaskSmoothingD is ErosionMaskSmoothingDict is ErosionMaskSmoothingd
    image = torch.rand(1, 20, 20)
    data = {"image": image, "label": _square()}
    out = ErosionMaskSmoothingd("label", kernel_size=3, iterations=1)(data)
    assert out["image"] is image
    assert torch.equal(out["label"], ErosionMaskSmoothing(kernel_size=3, iterations=1)(_square()))
    assert torch.equal(data["label"], _square())  # the input dict is not modified
    missing = ErosionMaskSmoothingd(["label", "other"], allow_missing_keys=True)({"label": _square()})
    assert set(missing) == {"label"}
    with pytest.raises(KeyError):
        ErosionMaskSmoothingd("other")({"label": _square()})


def test_runs_after_nearest_resize_and_asdiscrete_on_a_loaded_label():
    # As LoadImaged(PILReader, ensure_channel_first) gives it: float32 0/255 MetaTensor.
    label = MetaTensor(255 * _blob(), affine=torch.eye(4), meta={"filename_or_obj": "1_1_mask.tif"})
    image = MetaTensor(torch.rand(1, 64, 64), affine=torch.eye(4))
    pipeline = Compose(
        [
            Resized(keys=["image", "label"], spatial_size=(32, 32), mode=["bilinear", "nearest"]),
            AsDiscreted(keys="label", threshold=0.5),
            ErosionMaskSmoothingd(keys="label", kernel_size=3, iterations=2),
        ]
    )
    out = pipeline({"image": image, "label": label})
    target = out["label"]
    assert isinstance(target, MetaTensor) and target.shape == (1, 32, 32) and target.dtype == torch.float32
    assert target.meta["filename_or_obj"] == "1_1_mask.tif"
    assert set(torch.unique(target.as_tensor()).tolist()) == {0.0, float(INTERIOR), 1.0}
    assert out["image"].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="needs a binary 0/1 mask"):
        ErosionMaskSmoothingd(keys="label")({"label": label})  # 0/255 without AsDiscreted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 8}, "odd integer kernel_size >= 1, got 8"),
        ({"kernel_size": 0}, "odd integer kernel_size >= 1, got 0"),
        ({"iterations": -1}, "iterations >= 0, got -1"),
        ({"eps": 1.0}, "0 <= eps < 1, got 1.0"),
        ({"eps": -0.1}, "0 <= eps < 1, got -0.1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ErosionMaskSmoothing(**kwargs)
    with pytest.raises(ValueError, match=match):
        ErosionMaskSmoothingd("label", **kwargs)


def test_non_binary_mask():
    with pytest.raises(ValueError, match=r"needs a binary 0/1 mask .*AsDiscreted.*got values \[255.0\]"):
        ErosionMaskSmoothing()(255 * _square())
    with pytest.raises(ValueError, match=r"got values \[0.5\]"):
        ErosionMaskSmoothing()(0.5 * _square())


@pytest.mark.parametrize("shape", [(20,), (20, 20), (1, 1, 20, 20), (1, 8, 8, 8)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match=r"channel-first 2D mask \[C, H, W\], got shape"):
        ErosionMaskSmoothing()(torch.zeros(shape))
