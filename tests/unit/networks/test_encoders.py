"""Encoders from MONAI's registry and ImageNet weights loaded from a local file."""

from __future__ import annotations

import pytest
import torch
from efficientnet_pytorch import EfficientNet
from monai.networks.nets import BasicUNet, FlexibleUNet, ResNet

from nerveseg.networks.encoders import ENCODER_NAMES, build_encoder, check_input_size, load_encoder_weights


@pytest.fixture(scope="module")
def efficientnet_b0_weights(tmp_path_factory):
    """A weights file in the layout of the released efficientnet-pytorch ImageNet weights, with random values."""
    torch.manual_seed(0)
    imagenet = EfficientNet.from_name("efficientnet-b0")
    state = {name: torch.randn_like(t.float()).to(t.dtype) for name, t in imagenet.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "efficientnet-b0.pth"
    torch.save(state, path)
    return path, state


def test_every_encoder_tensor_of_a_one_channel_flexible_unet_is_loaded(efficientnet_b0_weights):
    path, state = efficientnet_b0_weights
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0", pretrained=False)
    decoder_before = {k: v.clone() for k, v in network.decoder.state_dict().items()}
    assert load_encoder_weights(network, path) is network
    loaded = network.encoder.state_dict()
    checked = 0
    for name, tensor in loaded.items():
        source = state[name] if name in state else state[".".join(name.split(".")[:1] + name.split(".")[2:])]
        if name.startswith("_fc."):
            continue
        if name == "_conv_stem.weight":
            assert tensor.shape[1] == 1 and source.shape[1] == 3
            torch.testing.assert_close(tensor, source.sum(dim=1, keepdim=True))
        else:
            torch.testing.assert_close(tensor, source)
        checked += 1
    assert checked == len(loaded) - 2  # all but the ImageNet classifier's weight and bias
    for name, tensor in network.decoder.state_dict().items():
        torch.testing.assert_close(tensor, decoder_before[name])


def test_gray_input_gives_the_rgb_stem_response(efficientnet_b0_weights):
    path, _ = efficientnet_b0_weights
    gray = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0")
    rgb = FlexibleUNet(in_channels=3, out_channels=1, backbone="efficientnet-b0")
    load_encoder_weights(gray, path)
    load_encoder_weights(rgb, path)
    image = torch.rand(1, 1, 32, 32)
    gray_stem = gray.encoder._conv_stem(image)
    torch.testing.assert_close(gray_stem, rgb.encoder._conv_stem(image.expand(1, 3, 32, 32)))


def test_two_channel_stem_is_rescaled(efficientnet_b0_weights):
    path, state = efficientnet_b0_weights
    network = FlexibleUNet(in_channels=2, out_channels=1, backbone="efficientnet-b0")
    load_encoder_weights(network, path)
    stem = network.encoder._conv_stem.weight
    torch.testing.assert_close(stem, state["_conv_stem.weight"][:, [0, 1]] * 1.5)


def test_a_classifier_keeps_its_own_head(efficientnet_b0_weights):
    path, state = efficientnet_b0_weights
    classifier = EfficientNet.from_name("efficientnet-b0", in_channels=1, num_classes=1)
    load_encoder_weights(classifier, path)
    torch.testing.assert_close(classifier._blocks[3]._project_conv.weight, state["_blocks.3._project_conv.weight"])
    assert classifier._fc.weight.shape == (1, 1280)


def test_resnet_weights_in_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    imagenet = ResNet("basic", [1, 1, 1, 1], [64, 128, 256, 512], spatial_dims=2, n_input_channels=3)
    path = tmp_path / "resnet10.pth"
    torch.save(imagenet.state_dict(), path)
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="resnet10")
    load_encoder_weights(network, path)
    torch.testing.assert_close(network.encoder.layer4[0].conv2.weight, imagenet.layer4[0].conv2.weight)
    torch.testing.assert_close(network.encoder.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))


def test_no_path_leaves_the_network_alone():
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0")
    before = {k: v.clone() for k, v in network.state_dict().items()}
    load_encoder_weights(network, None)
    for name, tensor in network.state_dict().items():
        torch.testing.assert_close(tensor, before[name])


def test_weights_of_another_backbone_are_refused(efficientnet_b0_weights):
    path, _ = efficientnet_b0_weights
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b2")
    with pytest.raises(ValueError, match="efficientnet-b0.pth does not fit .* another backbone"):
        load_encoder_weights(network, path)


def test_a_network_without_an_encoder_names_the_override_that_has_one(efficientnet_b0_weights):
    path, _ = efficientnet_b0_weights
    with pytest.raises(ValueError, match="BasicUNet has no pretrained encoder: stack configs/networks/flexible_unet"):
        load_encoder_weights(BasicUNet(spatial_dims=2, features=(4, 4, 8, 8, 16, 4), norm="batch"), path)


def test_missing_and_corrupt_files(tmp_path):
    network = FlexibleUNet(in_channels=1, out_channels=1, backbone="efficientnet-b0")
    with pytest.raises(ValueError, match="Pretrained weights file .*absent.pth does not exist"):
        load_encoder_weights(network, tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read pretrained weights .*corrupt.pth"):
        load_encoder_weights(network, corrupt)


def test_build_encoder_gives_five_maps_at_strides_2_to_32():
    encoder, channels = build_encoder("resnet10", in_channels=1)
    features = encoder(torch.rand(1, 1, 64, 96))
    assert [f.shape[1] for f in features] == list(channels)
    assert [tuple(f.shape[2:]) for f in features] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]


def test_unknown_backbone_names_the_choices():
    assert "efficientnet-b7" in ENCODER_NAMES and "resnet50" in ENCODER_NAMES
    with pytest.raises(ValueError, match=r"Unknown backbone 'vgg16'; choose one of efficientnet-b0, .*resnet200"):
        build_encoder("vgg16")
    with pytest.raises(ValueError, match="in_channels must be at least 1, got 0"):
        build_encoder("resnet10", in_channels=0)


def test_built_encoder_has_no_parameter_without_gradient():
    encoder, _ = build_encoder("efficientnet-b0", in_channels=1)
    sum(f.mean() for f in encoder(torch.rand(1, 1, 64, 64))).backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_input_size_advice_names_the_padded_and_nearest_sizes():
    check_input_size(448, 576, "MUNet")
    with pytest.raises(ValueError, match=r"got \(420, 580\); pad to \(448, 608\) .* resize to \(416, 576\)"):
        check_input_size(420, 580, "MUNet")
