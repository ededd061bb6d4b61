"""The inference backends: names and the auto rule, OpenVINO against eager, its cache, wrapped inferers, refusals."""

from __future__ import annotations

import concurrent.futures
import copy
import json
import logging
import os
import warnings

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from monai.networks.nets import BasicUNet
from torch import nn

from nerveseg.bundle.inference import backends, openvino_models
from nerveseg.bundle.inference.accelerated import AcceleratedInferer
from nerveseg.bundle.inference.backends import OpenVINONetwork, resolve_backend
from nerveseg.bundle.inference.inferers import ASMEInferer, FlipTTAInferer
from nerveseg.bundle.inference.openvino_cache import cache_dir_beside
from nerveseg.utils.class_logits import with_class_logits
from nerveseg.utils.errors import UserInputError

NEEDS_OPENVINO = "the openvino backend needs the openvino package, a dependency: pip install -e ."


@pytest.fixture
def openvino():
    return pytest.importorskip("openvino", reason=NEEDS_OPENVINO)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """``(checkpoint, cache_dir)`` of the tests that do not count conversions, so each tiny network is converted
    once: the checkpoint of :func:`tiny_unet`, whose weights every call of it gives."""
    folder = tmp_path_factory.mktemp("models")
    torch.save(tiny_unet().state_dict(), folder / "model.pt")
    return {"checkpoint": folder / "model.pt", "cache_dir": folder / "openvino"}


def tiny_unet(seed: int = 0) -> nn.Module:
    """MONAI's BasicUNet at its smallest, its logits spread wide so that no mask pixel sits on the threshold."""
    torch.manual_seed(seed)
    network = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=(4, 4, 8, 16, 32, 4)).eval()
    with torch.no_grad():
        network.final_conv.weight.mul_(10)
    return network


def small_net(seed: int = 0) -> nn.Module:
    """Two convolutions: the quickest network to convert, for the tests that convert more than once."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1)).eval()


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


class WithClassLogits(nn.Module):
    """A conv net that attaches ``[B, 2]`` class logits to its mask logits, as MUNet does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = x.as_tensor() if isinstance(x, MetaTensor) else x
        return with_class_logits(self.conv(plain), plain[:, 0, 0, :2], x)


def test_backend_names_and_the_auto_rule(monkeypatch):
    monkeypatch.setattr(backends, "openvino_available", lambda: True)
    assert resolve_backend("auto", "cpu") == "openvino" and resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("torch", "cpu") == "torch" and resolve_backend("openvino", "cuda") == "openvino"
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(UserInputError, match=r"not installed: install the bundle again \(pip install -e \.\)"):
        AcceleratedInferer(backend="openvino")
    with pytest.raises(UserInputError, match=r"Unknown inference_backend 'onnx'; choose one of \['auto', 'torch'"):
        AcceleratedInferer(backend="onnx")
    assert cache_dir_beside("models/model_swa.pt") == "models/openvino"


def test_openvino_matches_eager_at_any_batch_and_keeps_metadata(openvino, shared_cache):
    network = tiny_unet()
    x = MetaTensor(images(2), meta={"filename_or_obj": ["a.png", "b.png"]})
    with torch.no_grad():
        eager = AcceleratedInferer(precision="float32", channels_last=False)(x, network)
        out = AcceleratedInferer(precision="float32", backend="openvino", **shared_cache)(x, network)
        three = OpenVINONetwork(network, **shared_cache)(images(3, seed=1))
        eager_three = network(images(3, seed=1))
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.shape == eager.shape
    assert out.meta["filename_or_obj"] == eager.meta["filename_or_obj"] and out.is_batch == eager.is_batch
    torch.testing.assert_close(out.as_tensor(), eager.as_tensor(), atol=1e-4, rtol=0)
    assert type(three) is torch.Tensor and three.shape == (3, 1, 32, 32)
    torch.testing.assert_close(three, eager_three, atol=1e-4, rtol=0)
    assert network.final_conv.weight.is_contiguous()  # the openvino path leaves the network as it is


def test_conversion_shows_no_warning_about_how_openvino_traces_the_network(openvino):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        OpenVINONetwork(tiny_unet().eval())(images(1))
    assert not [w for w in caught if "torch.jit" in str(w.message) or issubclass(w.category, torch.jit.TracerWarning)]


def test_the_execution_path_says_what_ran(openvino, shared_cache, caplog):
    network, x = tiny_unet(), images(1)
    float32 = AcceleratedInferer(precision="float32", backend="openvino", **shared_cache)
    torch_path = AcceleratedInferer(precision="float32", channels_last=False)
    assert float32.execution_path(network, "cpu") == "openvino float32"
    assert torch_path.execution_path(network, "cpu") == "torch float32"
    int8 = AcceleratedInferer(precision="int8", backend="openvino")  # no cache: no quantized model to read
    assert int8.execution_path(network, "cpu") == "openvino float32"
    with caplog.at_level(logging.WARNING), torch.no_grad():
        int8(x, network)
    assert int8.execution_path(network, "cpu") == "openvino float32"
    assert any("no checkpoint and inference_cache_dir" in r.getMessage() for r in caplog.records)


def test_each_batch_size_is_compiled_once_and_its_results_are_not_overwritten(openvino, monkeypatch):
    network, runtime = small_net(), OpenVINONetwork(small_net())
    compiled = []
    compile_model = openvino_models.core().compile_model
    monkeypatch.setattr(openvino_models.core(), "compile_model", lambda *a: compiled.append(1) or compile_model(*a))
    batches = [images(b, seed=b) for b in (2, 1, 2, 1)]
    outputs = [runtime(x) for x in batches]  # alternating sizes, as ASME's early stop calls
    assert len(compiled) == 2
    with torch.no_grad():
        for x, out in zip(batches, outputs, strict=True):  # each result is its own, not the kept request's buffer
            torch.testing.assert_close(out, network(x), atol=1e-5, rtol=0)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # a busy request gives other threads requests of their own
        together = list(pool.map(runtime, [images(1, seed=s) for s in range(8)]))
    with torch.no_grad():
        for s, out in enumerate(together):
            torch.testing.assert_close(out, network(images(1, seed=s)), atol=1e-5, rtol=0)


def test_the_cache_is_written_once_reused_and_renewed_when_the_checkpoint_changes(openvino, tmp_path, monkeypatch):
    conversions = []
    convert = openvino.convert_model
    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: conversions.append(1) or convert(*a, **k))
    network, x, checkpoint, cache = small_net(), images(1), tmp_path / "model_swa.pt", tmp_path / "openvino"
    torch.save(network.state_dict(), checkpoint)
    first = OpenVINONetwork(network, checkpoint=checkpoint, cache_dir=cache)(x)
    (entry,) = cache.iterdir()
    assert entry.name == "model_swa-Sequential-1x32x32" and len(conversions) == 1
    assert sorted(p.name for p in entry.iterdir()) == ["conversion.json", "model.bin", "model.xml"]
    written = (entry / "model.bin").stat().st_mtime_ns

    again = OpenVINONetwork(copy.deepcopy(network), checkpoint=checkpoint, cache_dir=cache)(x)  # as a new process
    assert len(conversions) == 1 and (entry / "model.bin").stat().st_mtime_ns == written
    torch.testing.assert_close(again, first, atol=0, rtol=0)

    with torch.no_grad():
        network[2].bias.add_(1.0)  # retrained: a new checkpoint at the same path
        expected = network(x)
    torch.save(network.state_dict(), checkpoint)
    os.utime(checkpoint, ns=(written + 10**9, written + 10**9))
    changed = OpenVINONetwork(network, checkpoint=checkpoint, cache_dir=cache)(x)
    assert len(conversions) == 2 and [p.name for p in cache.iterdir()] == [entry.name]  # replaced, not beside
    torch.testing.assert_close(changed, expected, atol=1e-4, rtol=0)
    assert json.loads((entry / "conversion.json").read_text())["checkpoint_mtime_ns"] == written + 10**9


def test_a_cache_needs_the_checkpoint_and_the_checkpoint_must_exist(openvino, tmp_path):
    with pytest.raises(ValueError, match="cache_dir .* needs the checkpoint the network was loaded from"):
        AcceleratedInferer(backend="openvino", cache_dir=tmp_path)
    runtime = OpenVINONetwork(small_net(), checkpoint=tmp_path / "missing.pt", cache_dir=tmp_path / "openvino")
    with pytest.raises(UserInputError, match=r"checkpoint .*missing\.pt is not a file"):
        runtime(images(1))


def test_an_inferer_keeps_the_converted_model_of_its_network_and_converts_for_another(openvino, monkeypatch):
    conversions = []
    convert = openvino.convert_model
    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: conversions.append(1) or convert(*a, **k))
    inferer, first, second = AcceleratedInferer(precision="float32", backend="openvino"), small_net(), small_net(1)
    with torch.no_grad():
        for network in (first, first, second, second):
            torch.testing.assert_close(inferer(images(1), network), network(images(1)), atol=1e-4, rtol=0)
    assert len(conversions) == 2


def test_inferers_sharing_one_openvino_network_convert_it_once_and_refuse_another_precision(openvino, monkeypatch):
    conversions = []
    convert = openvino.convert_model
    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: conversions.append(1) or convert(*a, **k))
    network, x = small_net(), images(1)
    shared = AcceleratedInferer(precision="float32", backend="openvino").openvino_network(network)
    one = AcceleratedInferer(precision="float32", backend="openvino", openvino=shared)
    ensemble = AcceleratedInferer(FlipTTAInferer(), precision="float32", backend="openvino", openvino=shared)
    with torch.no_grad():
        torch.testing.assert_close(one(x, network), network(x), atol=1e-4, rtol=0)
        expected = AcceleratedInferer(FlipTTAInferer(), precision="float32")(x, network)
        torch.testing.assert_close(ensemble(x, network), expected, atol=1e-4, rtol=0)
    assert len(conversions) == 1 and one.openvino_network(network) is ensemble.openvino_network(network) is shared
    with pytest.raises(ValueError, match=r"openvino runs its network at torch.float32, but precision 'bfloat16'"):
        AcceleratedInferer(precision="bfloat16", backend="openvino", openvino=shared)


def test_conversion_runs_with_openvino_telemetry_declined_and_restores_the_environment(openvino, monkeypatch):
    seen = []
    convert = openvino.convert_model
    monkeypatch.setattr(
        openvino, "convert_model", lambda *a, **k: seen.append(os.environ.get("CI")) or convert(*a, **k)
    )
    monkeypatch.delenv("CI", raising=False)
    OpenVINONetwork(small_net(seed=3))(images(1))
    assert seen == ["true"] and "CI" not in os.environ  # the switch OpenVINO's consent check reads, then removed


@pytest.mark.parametrize("inner", [ASMEInferer(), FlipTTAInferer(), SimpleInferer()], ids=type)
def test_openvino_wraps_every_inferer_with_the_torch_result(openvino, shared_cache, inner):
    network, x = tiny_unet(), MetaTensor(images(2))
    with torch.no_grad():
        expected = AcceleratedInferer(inner, precision="float32", channels_last=False)(x, network)
        scores = dict(getattr(inner, "last_scores", None) or {})
        out = AcceleratedInferer(inner, precision="float32", backend="openvino", **shared_cache)(x, network)
    torch.testing.assert_close(out.as_tensor(), expected.as_tensor(), atol=1e-4, rtol=0)
    for key, value in scores.items():
        torch.testing.assert_close(inner.last_scores[key], value, atol=1e-6, rtol=0)


def test_a_network_with_class_logits_is_refused_by_openvino_and_run_by_torch_under_auto(openvino, tmp_path, caplog):
    network, x = WithClassLogits().eval(), MetaTensor(images(2))
    torch.save(network.state_dict(), tmp_path / "model.pt")
    cache = {"checkpoint": tmp_path / "model.pt", "cache_dir": tmp_path / "openvino"}
    with pytest.raises(UserInputError, match=r"WithClassLogits attaches class logits .* inference_backend to 'torch'"):
        AcceleratedInferer(precision="float32", backend="openvino", **cache)(x, network)
    auto = AcceleratedInferer(ASMEInferer(), precision="float32", backend="auto", **cache)
    assert auto.backend_for(network, "cpu") == "openvino"  # not known before the first call
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out, again = auto(x, network), auto(x, network)
        expected = AcceleratedInferer(ASMEInferer(), precision="float32")(x, network)
    assert auto.backend_for(network, "cpu") == "torch" and auto.backend_for(small_net(), "cpu") == "openvino"
    torch.testing.assert_close(out.meta["class_logits"], expected.meta["class_logits"])
    torch.testing.assert_close(out.as_tensor(), expected.as_tensor())
    torch.testing.assert_close(again.as_tensor(), expected.as_tensor())
    assert len([r for r in caplog.records if "runs torch for WithClassLogits" in r.message]) == 1  # told once
    assert not list(tmp_path.glob("openvino/*"))  # nothing was converted


def test_training_mode_an_unwritable_cache_and_a_precision_the_cpu_lacks_are_refused(openvino, tmp_path):
    network, x = tiny_unet().train(), images(1)
    with pytest.raises(UserInputError, match="BasicUNet is in training mode; .* put the network in eval mode"):
        AcceleratedInferer(backend="openvino")(x, network)
    auto = AcceleratedInferer(precision="float32", channels_last=False, backend="auto")(x, network)
    torch.testing.assert_close(auto, network(x))  # training mode runs torch under auto

    (tmp_path / "a_file").write_text("")
    torch.save(network.state_dict(), tmp_path / "model.pt")
    with pytest.raises(UserInputError, match=r"Cannot write the OpenVINO cache .*a_file.* set inference_cache_dir"):
        OpenVINONetwork(network.eval(), checkpoint=tmp_path / "model.pt", cache_dir=tmp_path / "a_file" / "ov")(x)
    if not openvino_models.openvino_supports(torch.float16):
        with pytest.raises(UserInputError, match="OpenVINO does not compute float16 natively on this CPU"):
            OpenVINONetwork(network, precision=torch.float16)(x)
