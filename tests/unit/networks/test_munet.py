"""MUNet, its branch fusion and its loss."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate

from nerveseg.bundle.losses import MUNetLoss
from nerveseg.networks.munet import MUNet, fuse_branches
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY


@pytest.fixture(scope="module")
def network() -> MUNet:
    torch.manual_seed(0)
    return MUNet(in_channels=1, out_channels=1, num_classes=1, backbone="resnet10", decoder_channels=(32, 16, 16, 8))


@pytest.fixture(autouse=True)
def _train_mode(network):
    network.train()


def _target() -> torch.Tensor:
    target = torch.zeros(2, 1, 64, 64)
    target[0, :, 20:40, 10:30] = 1.0
    return target


def test_training_outputs(network):
    outputs = network(torch.randn(2, 1, 64, 96))
    assert isinstance(outputs, list) and len(outputs) == 6
    assert [tuple(o.shape) for o in outputs[:5]] == [(2, 1, 64, 96)] * 5
    assert outputs[5].shape == (2, 1)
    torch.testing.assert_close(outputs[0], fuse_branches(outputs[1:5]))


def test_eval_returns_the_fused_logits(network):
    x = torch.randn(2, 1, 64, 64)
    network.eval()
    output = network(x)
    assert type(output) is torch.Tensor and output.shape == (2, 1, 64, 64)
    assert torch.isfinite(output).all()


def test_backward_reaches_every_part(network):
    network.zero_grad()
    loss = MUNetLoss()(network(torch.randn(2, 1, 64, 64)), _target())
    loss.backward()
    for part in (network.encoder, network.decoder, network.heads, network.classifier):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), type(part).__name__


def test_fusion_weights_follow_the_soft_area():
    high = torch.full((1, 1, 4, 8), 0.9).logit()  # alpha = 1 - 0.9 = 0.1
    low = torch.full((1, 1, 4, 8), 0.1).logit()  # alpha = 0.9
    fused = fuse_branches([high, low]).sigmoid()
    torch.testing.assert_close(fused, torch.full_like(fused, 0.1 * 0.9 + 0.9 * 0.1), atol=1e-5, rtol=0)


def test_fusion_is_per_sample_and_averages_equal_branches():
    small = torch.full((2, 1, 8, 8), -20.0)
    small[:, :, :2, :2] = 20.0  # area 4/64
    large = torch.full((2, 1, 8, 8), 20.0)  # sample 0: all foreground, alpha 0
    large[1] = -20.0  # sample 1: empty, alpha 1
    p_small, p_large = small.sigmoid(), large.sigmoid()
    alpha_small, alpha_large = 1 - 4 / 64, torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
    expected = (alpha_small * p_small + alpha_large * p_large) / (alpha_small + alpha_large)
    torch.testing.assert_close(fuse_branches([small, large]).sigmoid(), expected, atol=1e-5, rtol=0)
    same = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(fuse_branches([same, same, same]).sigmoid(), same.sigmoid(), atol=1e-6, rtol=0)


def test_class_logits_ride_along_in_the_metadata(network):
    network.eval()
    batch = list_data_collate(
        [{"image": MetaTensor(torch.randn(1, 64, 64), meta={"filename_or_obj": f"{i}.tif"})} for i in range(2)]
    )
    output = network(batch["image"])
    assert isinstance(output, MetaTensor) and output.shape == (2, 1, 64, 64)
    assert output.meta[CLASS_LOGITS_KEY].shape == (2, 1)
    samples = decollate_batch(output)
    assert [s.meta["filename_or_obj"] for s in samples] == ["0.tif", "1.tif"]
    for sample, logits in zip(samples, output.meta[CLASS_LOGITS_KEY], strict=True):
        assert sample.shape == (1, 64, 64)
        torch.testing.assert_close(sample.meta[CLASS_LOGITS_KEY], logits)
    assert CLASS_LOGITS_KEY not in batch["image"].meta


def test_trace_save_and_load(network, tmp_path):
    network.eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        traced = torch.jit.trace(network, x)
        traced.save(tmp_path / "munet.ts")
        loaded = torch.jit.load(tmp_path / "munet.ts")
        torch.testing.assert_close(loaded(x), network(x), atol=1e-5, rtol=0)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet9'.*resnet34"):
        MUNet(backbone="resnet9")


@pytest.mark.parametrize("arguments", [{"out_channels": 0}, {"num_classes": 0}, {"in_channels": 0}])
def test_channels_at_least_one(arguments):
    name, value = next(iter(arguments.items()))
    with pytest.raises(ValueError, match=f"{name} must be at least 1, got {value}"):
        MUNet(backbone="resnet10", **arguments)


def test_decoder_channels_length():
    with pytest.raises(ValueError, match=r"decoder_channels needs 4.*got \(64, 32\)"):
        MUNet(backbone="resnet10", decoder_channels=(64, 32))


def test_size_not_divisible_by_32(network):
    with pytest.raises(ValueError, match=r"divisible by 32, got \(65, 96\); .*pad to \(96, 96\).*resize to \(64, 96\)"):
        network(torch.randn(1, 1, 65, 96))


def test_loss_needs_the_training_list(network):
    network.eval()
    with pytest.raises(ValueError, match="MUNetLoss needs the list MUNet returns in training mode"):
        MUNetLoss()(network(torch.randn(1, 1, 64, 64)), torch.zeros(1, 1, 64, 64))


def test_loss_needs_one_class_per_mask_channel():
    outputs = [torch.zeros(1, 1, 32, 32)] * 5 + [torch.zeros(1, 2)]
    with pytest.raises(ValueError, match="num_classes == out_channels"):
        MUNetLoss()(outputs, torch.zeros(1, 1, 32, 32))


def test_negative_mask_weight():
    with pytest.raises(ValueError, match="mask_weight must be at least 0, got -1"):
        MUNetLoss(mask_weight=-1)


def test_loss_of_perfect_outputs_is_near_zero():
    target = _target()
    perfect = 40.0 * (2 * target - 1)
    class_logits = torch.tensor([[40.0], [-40.0]])  # sample 0 has a nerve, sample 1 none
    loss = MUNetLoss()([perfect] * 5 + [class_logits], target)
    assert loss.item() < 1e-4
    empty = torch.zeros(1, 1, 64, 64)
    assert MUNetLoss()([torch.full_like(empty, -40.0)] * 5 + [torch.tensor([[-40.0]])], empty).item() < 1e-4


def test_wrong_class_and_masks_cost():
    target = _target()
    perfect = 40.0 * (2 * target - 1)
    wrong_class = MUNetLoss(mask_weight=0.0)([perfect] * 5 + [torch.tensor([[-3.0], [3.0]])], target)
    assert wrong_class.item() > 1.0
    empty_masks = MUNetLoss(mask_weight=0.25)([torch.full_like(target, -40.0)] * 5 + [torch.zeros(2, 1)], target)
    focal_only = MUNetLoss(mask_weight=0.0)([torch.full_like(target, -40.0)] * 5 + [torch.zeros(2, 1)], target)
    # sample 0 misses its whole mask (Dice 0) in all four branches, sample 1 is right: mean 0.5 per branch
    torch.testing.assert_close(empty_masks - focal_only, torch.tensor(0.25 * 4 * 0.5), atol=1e-4, rtol=0)


def test_presence_from_a_soft_target():
    soft = torch.zeros(2, 1, 16, 16)
    soft[0, :, 4:8, 4:8] = 0.3  # an eroded-and-smoothed mask never reaches 1
    logits = torch.tensor([[10.0], [-10.0]])
    loss = MUNetLoss(mask_weight=0.0)([torch.zeros(2, 1, 16, 16)] * 5 + [logits], soft)
    assert loss.item() < 1e-6
    swapped = MUNetLoss(mask_weight=0.0)([torch.zeros(2, 1, 16, 16)] * 5 + [-logits], soft)
    assert swapped.item() > 1.0
