"""The accelerated path over any inferer: channels-last, reduced precision, float32 out, metadata and scores kept."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from torch import nn

from inferer_nets import SCORE_DTYPES, WithClassLogits, images
from nerveseg.bundle.inference.accelerated import AcceleratedInferer, resolve_precision
from nerveseg.bundle.inference.inferers import SCORE_KEYS, ASMEInferer
from nerveseg.utils.class_logits import CLASS_LOGITS_KEY


class ConvNet(nn.Module):
    """Two convolutions with a batch norm between: 4D weights to put in channels-last order."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_accelerated_float32_without_channels_last_is_the_wrapped_inferer_exactly():
    x, net = images(2), ConvNet()
    out = AcceleratedInferer(precision="float32", channels_last=False)(x, net)
    assert torch.equal(out, net(x))
    assert net.net[0].weight.is_contiguous()
    asme = AcceleratedInferer(ASMEInferer(), precision="float32", channels_last=False)(x, net)
    assert torch.equal(asme, ASMEInferer()(x, net))


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_accelerated_path_returns_float32_close_to_eager_and_converts_the_weights_once(precision):
    x, net = images(2), ConvNet()
    with torch.no_grad():
        eager = net(x)
        out = AcceleratedInferer(precision=precision)(x, net)
    assert out.dtype == torch.float32 and out.shape == eager.shape
    tolerance = 0.05 if precision == "bfloat16" else 1e-5
    torch.testing.assert_close(out, eager, atol=tolerance, rtol=tolerance)
    if precision == "bfloat16":
        assert not torch.equal(out, eager)  # it really ran in reduced precision
    assert net.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    converted = net.net[0].weight
    AcceleratedInferer(precision=precision)(x, net)
    assert net.net[0].weight is converted


def test_accelerated_asme_keeps_metadata_scores_and_class_logits_in_float32():
    x = MetaTensor(images(2), meta={"filename_or_obj": ["a.tif", "b.tif"]})
    inner = ASMEInferer()
    out = AcceleratedInferer(inner, precision="bfloat16")(x, WithClassLogits())
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert out.meta["filename_or_obj"] == ["a.tif", "b.tif"]
    assert out.meta[CLASS_LOGITS_KEY].dtype == torch.float32 and out.meta[CLASS_LOGITS_KEY].shape == (2, 2)
    for key in SCORE_KEYS:
        assert out.meta[key].dtype == SCORE_DTYPES.get(key, torch.float32) and out.meta[key].shape[0] == 2
    torch.testing.assert_close(out.meta["asme_weights"], inner.last_scores["asme_weights"])


def test_precision_names_and_auto(monkeypatch):
    import nerveseg.bundle.inference.accelerated as inferers

    assert resolve_precision("bfloat16", "cpu") == torch.bfloat16
    assert resolve_precision("float32", "cuda") == torch.float32
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == torch.float32
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: True)
    expected = torch.bfloat16 if torch.backends.mkldnn.is_available() else torch.float32
    assert resolve_precision("auto", "cpu") == expected
    with pytest.raises(ValueError, match=r"Unknown precision 'fp8'; choose 'auto' or one of \['float32', 'bfloat16'"):
        AcceleratedInferer(precision="fp8")
