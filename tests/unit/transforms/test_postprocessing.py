"""Post-processing: minimum-area emptying, small-component removal and the presence gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch
from monai.data.utils import list_data_collate
from monai.transforms import Activationsd, AsDiscreted, Compose, EnsureTyped, Invertd, Resized

from nerveseg.transforms.postprocessing import (
    EmptySmallMask,
    EmptySmallMaskD,
    EmptySmallMaskd,
    EmptySmallMaskDict,
    PresenceGate,
    PresenceGateD,
    PresenceGated,
    PresenceGateDict,
    RemoveSmallComponents,
    RemoveSmallComponentsD,
    RemoveSmallComponentsd,
    RemoveSmallComponentsDict,
)


def _mask_with_area(area: int, shape: tuple[int, int] = (32, 48)) -> torch.Tensor:
    """A [1, H, W] 0/1 mask with ``area`` foreground pixels split over two components."""
    mask = torch.zeros(shape)
    flat = mask.view(-1)
    flat[: area // 2] = 1
    flat[flat.numel() - (area - area // 2) :] = 1
    return mask[None]


# EmptySmallMask


@pytest.mark.parametrize("area, kept", [(100, False), (101, True), (99, False), (0, False)])
def test_empty_small_mask_boundary(area, kept):
    mask = _mask_with_area(area)
    out = EmptySmallMask(min_area=100)(mask)
    assert out.shape == mask.shape and out.dtype == mask.dtype
    assert torch.equal(out, mask if kept else torch.zeros_like(mask))


def test_empty_small_mask_counts_the_whole_image_not_components():
    mask = torch.zeros(1, 20, 20)
    mask[0, :5, :5] = 1  # 25 px
    mask[0, 10:15, 10:15] = 1  # 25 px more: 50 in all
    assert torch.equal(EmptySmallMask(min_area=49)(mask), mask)
    assert not EmptySmallMask(min_area=50)(mask).any()


def test_empty_small_mask_at_the_network_size_scales_min_area_to_the_original_image():
    original = MetaTensor(_mask_with_area(400, (40, 60)), meta={"spatial_shape": [40, 60]})
    assert torch.equal(EmptySmallMask(min_area=399)(original), original)  # at its own size: unscaled
    small = MetaTensor(_mask_with_area(100, (20, 30)), meta={"spatial_shape": [40, 60]})  # a quarter of the area
    assert torch.equal(EmptySmallMask(min_area=399)(small), small)  # 100 px > 399 / 4
    assert not EmptySmallMask(min_area=400)(small).any()  # 100 px <= 400 / 4
    plain = _mask_with_area(100, (20, 30))
    assert not EmptySmallMask(min_area=100)(plain).any() and torch.equal(EmptySmallMask(min_area=99)(plain), plain)


def test_empty_small_mask_per_channel():
    mask = torch.cat([_mask_with_area(100), _mask_with_area(101), _mask_with_area(0)])
    out = EmptySmallMask(min_area=100)(mask)
    assert not out[0].any() and torch.equal(out[1], mask[1]) and not out[2].any()


def test_empty_small_mask_keeps_metatensor_and_numpy():
    meta = MetaTensor(_mask_with_area(10), meta={"filename_or_obj": "12.tif"})
    out = EmptySmallMask(min_area=10)(meta)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "12.tif" and not out.any()
    array = (_mask_with_area(11).numpy() * 255).astype(np.uint8)
    out = EmptySmallMask(min_area=10)(array)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and np.array_equal(out, array)
    assert isinstance(EmptySmallMask(min_area=11)(array > 0), np.ndarray)
    assert not EmptySmallMask(min_area=11)(array > 0).any()


def test_empty_small_mask_off_and_dict_forms():
    mask = _mask_with_area(3)
    assert EmptySmallMask(min_area=0)(mask) is mask
    assert EmptySmallMaskD is EmptySmallMaskDict is EmptySmallMaskd
    out = EmptySmallMaskd(keys="pred", min_area=3)({"pred": mask, "image": mask})
    assert not out["pred"].any() and out["image"] is mask
    assert EmptySmallMaskd(keys="other", min_area=3, allow_missing_keys=True)({"pred": mask})["pred"] is mask


def test_empty_small_mask_errors():
    with pytest.raises(ValueError, match=r"min_area >= 0, got -1"):
        EmptySmallMask(min_area=-1)
    with pytest.raises(ValueError, match=r"min_area >= 0, got 2.5"):
        EmptySmallMask(min_area=2.5)
    with pytest.raises(ValueError, match=r"\[C, H, W\], got shape \(32, 48\)"):
        EmptySmallMask(min_area=5)(torch.zeros(32, 48))
    with pytest.raises(ValueError, match=r"probabilities\?.*AsDiscreted"):
        EmptySmallMask(min_area=5)(torch.full((1, 4, 4), 0.7))


# RemoveSmallComponents


def _diagonal_pair() -> np.ndarray:
    """Two 2x2 squares touching at one corner, and a lone 3x3 square."""
    mask = np.zeros((1, 12, 12), dtype=np.uint8)
    mask[0, 0:2, 0:2] = 1
    mask[0, 2:4, 2:4] = 1
    mask[0, 8:11, 8:11] = 1
    return mask


def test_remove_small_components_connectivity():
    mask = _diagonal_pair()
    # 8-neighbourhood: the diagonal pair is one component of 8 px, kept at min_size 7; the 9 px square too.
    eight = RemoveSmallComponents(min_size=7, connectivity=2)(mask)
    assert np.array_equal(eight, mask)
    # 4-neighbourhood: two components of 4 px, both removed.
    four = RemoveSmallComponents(min_size=7, connectivity=1)(mask)
    expected = mask.copy()
    expected[0, :4, :4] = 0
    assert np.array_equal(four, expected)


@pytest.mark.parametrize("min_size, remaining", [(8, 9), (9, 0), (3, 17)])
def test_remove_small_components_boundary(min_size, remaining):
    out = RemoveSmallComponents(min_size=min_size)(_diagonal_pair())
    assert int(out.sum()) == remaining


def test_remove_small_components_per_channel_keeps_values_and_types():
    mask = np.concatenate([_diagonal_pair(), _diagonal_pair()[:, ::-1]]) * 255
    out = RemoveSmallComponents(min_size=8)(mask)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 255}
    assert (out > 0).reshape(2, -1).sum(1).tolist() == [9, 9]
    meta = MetaTensor(torch.as_tensor(_diagonal_pair()).float(), meta={"filename_or_obj": "a.png"})
    out = RemoveSmallComponents(min_size=8)(meta)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.meta["filename_or_obj"] == "a.png"
    assert int(out.sum()) == 9
    out = RemoveSmallComponents(min_size=8)(torch.as_tensor(_diagonal_pair()).bool())
    assert type(out) is torch.Tensor and out.dtype == torch.bool and int(out.sum()) == 9


def test_remove_small_components_off_empty_and_dict_forms():
    mask = torch.as_tensor(_diagonal_pair())
    assert RemoveSmallComponents(min_size=0)(mask) is mask
    empty = torch.zeros(1, 5, 5)
    assert torch.equal(RemoveSmallComponents(min_size=3)(empty), empty)
    assert RemoveSmallComponentsD is RemoveSmallComponentsDict is RemoveSmallComponentsd
    out = RemoveSmallComponentsd(keys="pred", min_size=8, connectivity=1)({"pred": mask})
    assert int(out["pred"].sum()) == 9


def test_remove_small_components_errors():
    with pytest.raises(ValueError, match=r"min_size >= 0, got -3"):
        RemoveSmallComponents(min_size=-3)
    with pytest.raises(ValueError, match=r"connectivity 1 .* or 2 .*got 4"):
        RemoveSmallComponents(min_size=3, connectivity=4)
    with pytest.raises(ValueError, match=r"\[C, H, W\], got shape \(1, 1, 4, 4\)"):
        RemoveSmallComponents(min_size=3)(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"AsDiscreted"):
        RemoveSmallComponents(min_size=3)(np.full((1, 4, 4), 0.2))


# PresenceGate


def _decollated(logits: list[float]) -> list[MetaTensor]:
    """Per-sample probabilities [1, 8, 8] of a batch whose meta carries [B, 1] class logits."""
    batch = MetaTensor(torch.full((len(logits), 1, 8, 8), 0.8))
    batch.meta["class_logits"] = torch.tensor(logits)[:, None]
    return decollate_batch(batch)


def test_presence_gate_through_decollate_batch():
    # sigmoid(0.0) = 0.5, sigmoid(0.1) > 0.5, sigmoid(-3) ~ 0.047
    samples = _decollated([0.1, 0.0, -3.0])
    assert samples[0].meta["class_logits"].shape == (1,)
    gate = PresenceGate(threshold=0.5)
    outs = [gate(sample) for sample in samples]
    assert outs[0] is samples[0]
    for out in outs[1:]:
        assert isinstance(out, MetaTensor) and out.shape == (1, 8, 8) and not out.any()
        assert "class_logits" in out.meta  # the metadata is kept
    assert PresenceGate(threshold=0.04)(samples[2]) is samples[2]
    assert gate.presence_probability(samples[1]) == pytest.approx(0.5)


def test_presence_gate_on_binary_masks_and_dict_forms():
    samples = _decollated([-1.0, 1.0])
    masks = [AsDiscreted(keys="pred", threshold=0.5)({"pred": s})["pred"] for s in samples]
    assert PresenceGateD is PresenceGateDict is PresenceGated
    gated = [PresenceGated(keys="pred", threshold=0.5)({"pred": m})["pred"] for m in masks]
    assert not gated[0].any() and gated[0].dtype == masks[0].dtype
    assert torch.equal(gated[1], masks[1])


def test_presence_gate_before_invertd_in_a_real_chain():
    """The gate must run before Invertd, which drops the class logits with the rest of the prediction's meta."""
    preprocessing = Compose([EnsureTyped(keys="image"), Resized(keys="image", spatial_size=(16, 24))])
    items = [preprocessing({"image": MetaTensor(torch.rand(1, 10, 15))}) for _ in range(2)]
    batch = list_data_collate(items)
    pred = batch["image"].clone()
    pred.meta["class_logits"] = torch.tensor([[4.0], [-4.0]])
    batch["pred"] = pred
    invert = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False)
    chain = Compose([Activationsd(keys="pred", sigmoid=True), PresenceGated(keys="pred", threshold=0.5), invert])
    kept, gated = (chain(sample)["pred"] for sample in decollate_batch(batch))
    assert kept.shape == gated.shape == (1, 10, 15)
    assert bool((kept > 0).all()) and not gated.any()
    assert "class_logits" not in kept.meta
    with pytest.raises(ValueError, match=r"needs class logits"):
        PresenceGate(threshold=0.5)(kept)


def test_presence_gate_off_and_errors():
    plain = torch.rand(1, 4, 4)
    assert PresenceGate(threshold=0)(plain) is plain
    array = np.ones((1, 4, 4))
    assert PresenceGate(threshold=0.0)(array) is array
    message = (
        r"PresenceGate needs class logits in pred.meta\['class_logits'\] \(MUNet or the presence-gated network\); "
        r"this network gives none — remove the gate or set its threshold to 0"
    )
    with pytest.raises(ValueError, match=message):
        PresenceGate(threshold=0.5)(plain)
    with pytest.raises(ValueError, match=message):
        PresenceGate(threshold=0.5)(MetaTensor(plain))
    for bad in (1.0, -0.1, 1.5, True):
        with pytest.raises(ValueError, match=r"0 <= threshold < 1"):
            PresenceGate(threshold=bad)
    batched = MetaTensor(torch.rand(2, 1, 4, 4))
    batched.meta["class_logits"] = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"shape \[K\], got shape \(2, 1\).*decollated"):
        PresenceGate(threshold=0.5)(batched)
