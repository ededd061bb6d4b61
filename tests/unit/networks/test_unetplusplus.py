"""UNet++ networks: the output convention, the dense decoder skips, and export by tracing."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceFocalLoss
from monai.networks.nets import BasicUNetPlusPlus as MonaiBasicUNetPlusPlus

from nerveseg.networks.unetplusplus import BasicUNetPlusPlus, EfficientUNetPlusPlus

FEATURES = (8, 8, 16, 32, 64, 8)
DECODER = (32, 16, 16, 8, 8)


def _basic(deep_supervision: bool) -> BasicUNetPlusPlus:
    torch.manual_seed(0)
    return BasicUNetPlusPlus(features=FEATURES, deep_supervision=deep_supervision)


def _monai_twin(network: BasicUNetPlusPlus) -> MonaiBasicUNetPlusPlus:
    """MONAI's BasicUNetPlusPlus with the same weights and deep supervision setting."""
    monai = MonaiBasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=1, features=FEATURES)
    monai.deep_supervision = network.deep_supervision
    monai.load_state_dict(network.state_dict())
    return monai


def _efficient(**kwargs) -> EfficientUNetPlusPlus:
    torch.manual_seed(0)
    return EfficientUNetPlusPlus(backbone="efficientnet-b0", decoder_channels=DECODER, **kwargs)


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_basic_eval_returns_monai_final_output(deep_supervision):
    network = _basic(deep_supervision).eval()
    monai = _monai_twin(network).eval()
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        output, expected = network(x), monai(x)
    assert isinstance(output, torch.Tensor)
    assert output.shape == (1, 1, 64, 96)
    torch.testing.assert_close(output, expected[-1])
    if not deep_supervision:
        torch.testing.assert_close(output, expected[0])


def test_basic_training_with_deep_supervision_is_final_first():
    network = _basic(True).train()
    monai = _monai_twin(network).train()
    x = torch.rand(2, 1, 64, 64)
    outputs, expected = network(x), monai(x)
    assert isinstance(outputs, list) and len(outputs) == 4
    assert all(o.shape == (2, 1, 64, 64) for o in outputs)
    for output, reference in zip(outputs, expected[::-1], strict=True):
        torch.testing.assert_close(output, reference)

    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    loss = DeepSupervisionLoss(DiceFocalLoss(sigmoid=True))(outputs, target)
    loss.backward()
    assert network.final_conv_0_1.weight.grad is not None and network.conv_0_0.conv_0.conv.weight.grad is not None


def test_basic_training_without_deep_supervision_is_one_tensor():
    output = _basic(False).train()(torch.rand(2, 1, 64, 64))
    assert isinstance(output, torch.Tensor) and output.shape == (2, 1, 64, 64)


def test_basic_rejects_no_output_channels():
    with pytest.raises(ValueError, match="out_channels must be at least 1.*got 0"):
        BasicUNetPlusPlus(out_channels=0)


@pytest.mark.parametrize("size", [(64, 96), (96, 64)])
def test_efficient_output_shape(size):
    network = _efficient(out_channels=2).eval()
    with torch.no_grad():
        assert network(torch.rand(1, 1, *size)).shape == (1, 2, *size)


def test_efficient_backward_reaches_encoder_and_decoder():
    network = _efficient().train()
    output = network(torch.rand(2, 1, 64, 64))
    assert isinstance(output, torch.Tensor) and output.shape == (2, 1, 64, 64)
    output.mean().backward()
    assert [name for name, p in network.named_parameters() if p.grad is None] == []
    assert network.encoder._conv_stem.weight.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in network.decoder.parameters())


def test_efficient_dense_skips_reach_every_shallower_level():
    network = _efficient().eval()
    # efficientnet-b0 features at strides 16, 8, 4, 2: 112, 40, 24, 16 channels; 320 at stride 32.
    expected = [
        320 + 112,
        DECODER[0] + 40,
        DECODER[1] + 24 + DECODER[0],
        DECODER[2] + 16 + DECODER[0] + DECODER[1],
        DECODER[3] + DECODER[0] + DECODER[1] + DECODER[2],
    ]
    assert [block.conv1.conv.in_channels for block in network.decoder] == expected
    # The stride-1 level sees the stride-16 level's output, up-sampled 16x, right after its own up-sampled input.
    seen = {}
    network.decoder[0].register_forward_hook(lambda module, inputs, output: seen.update(deepest=output))
    network.decoder[4].register_forward_hook(lambda module, inputs, output: seen.update(shallowest=inputs[0]))
    with torch.no_grad():
        network(torch.rand(1, 1, 64, 64))
    offset = DECODER[3]  # no encoder skip at stride 1
    dense = seen["shallowest"][:, offset : offset + DECODER[0]]
    torch.testing.assert_close(dense, torch.nn.functional.interpolate(seen["deepest"], scale_factor=16.0))


def test_efficient_rejects_bad_sizes_and_arguments():
    network = _efficient()
    with pytest.raises(ValueError, match=r"got \(65, 96\); pad to \(96, 96\).* or resize to \(64, 96\)"):
        network(torch.rand(1, 1, 65, 96))
    with pytest.raises(ValueError, match="out_channels must be at least 1.*got 0"):
        EfficientUNetPlusPlus(out_channels=0, backbone="efficientnet-b0")
    with pytest.raises(ValueError, match="in_channels must be at least 1.*got 0"):
        EfficientUNetPlusPlus(in_channels=0, backbone="efficientnet-b0")
    with pytest.raises(ValueError, match=r"five positive integers.*got \(16, 8\)"):
        EfficientUNetPlusPlus(backbone="efficientnet-b0", decoder_channels=(16, 8))
    with pytest.raises(ValueError, match="Unknown backbone 'efficientnet-b99'; choose one of .*efficientnet-b4"):
        EfficientUNetPlusPlus(backbone="efficientnet-b99")


# MONAI's UpCat decides on padding from the sizes it sees; at sizes divisible by 16 it never pads, so the trace holds.
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean:torch.jit.TracerWarning")
@pytest.mark.parametrize("build", [lambda: _basic(True), _efficient], ids=["basic", "efficient"])
def test_trace_round_trip(build, tmp_path):
    network = build().eval()
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        expected = network(x)
        traced = torch.jit.trace(network, x)
    path = tmp_path / "network.ts"
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=0)
        other = torch.rand(1, 1, 96, 64)  # a trace is not tied to the size it was traced at
        torch.testing.assert_close(loaded(other), network(other), atol=1e-5, rtol=0)


def test_efficient_scripts():
    network = _efficient().eval()
    scripted = torch.jit.script(network)
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x))
    with pytest.raises(torch.jit.Error, match=r"got \(65, 96\); pad to \(96, 96\)"):
        scripted(torch.rand(1, 1, 65, 96))
