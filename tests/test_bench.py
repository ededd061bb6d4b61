"""``nerveseg bench``: the quick run fills every headline number; the parts and timers behave (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import BUNDLE_ROOT, CONFIGS
from nerveseg.networks.profile import time_side_by_side
from nerveseg.scripts import performance

HEADLINES = ("peer_ratio", "fast_vs_eager_ratio", "asme_ratio_cpu", "data_wait_fraction", "quality_mean_dice")


def test_quick_suite_writes_bench_json_with_the_headline_numbers(tmp_path):
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "nerveseg.scripts.cli", "bench", "--quick", "--out", str(out)]
    result = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads((out / "bench.json").read_text())
    assert set(HEADLINES) <= set(bench) and bench["quick"] is True
    assert bench["machine"]["threads"] >= 1 and bench["machine"]["torch"]
    assert bench["fast_vs_eager_ratio"] > 0 and bench["asme_ratio_cpu"] > 0
    assert 0 <= bench["data_wait_fraction"] < 1
    assert bench["quality_mean_dice"] is None  # quick mode runs quality only when it is named
    if importlib.util.find_spec("segmentation_models_pytorch") is None:
        assert bench["peer_ratio"] is None and "benchmark extra" in bench["peer"]["skipped"]
    else:
        assert bench["peer_ratio"] > 0 and bench["peer"]["parameters"]["smp"] > 0
    paths = {row["path"] for row in bench["latency"]}
    assert set(performance.PATHS) == paths and bench["default_path"]["name"] in paths
    assert all(row["min"] <= row["median"] <= row["max"] for row in bench["latency"])
    assert bench["training"]["image_size"] == [448, 576] and bench["training"]["steps"] >= 1
    table = (out / "bench.md").read_text()
    assert "| `fast_vs_eager_ratio` |" in table and "quick mode" in table


def _nerve_folders(root: Path, count: int = 12) -> Path:
    """``images/`` and ``masks/`` PNGs (class 1 = a bright disc, as USGRA-seg's nerve label), 64x64."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for i in range(count):
        cy, cx = rng.integers(20, 44, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 100
        image = rng.normal(60, 15, (64, 64)) + 120 * disc
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"case{i}.png")
        Image.fromarray(disc.astype(np.uint8)).save(root / "masks" / f"case{i}.png")
    return root


def test_quality_part_trains_and_evaluates_both_paths(tmp_path):
    data = _nerve_folders(tmp_path / "usgra_like")
    out = tmp_path / "bench"
    performance.bench("quality", out=str(out), quick=True, bundle_root=str(BUNDLE_ROOT), data=str(data))
    bench = json.loads((out / "bench.json").read_text())
    quality = bench["quality"]
    assert [run["seed"] for run in quality["runs"]] == [0] and quality["image_size"] == [64, 64]
    run = quality["runs"][0]
    assert 0 <= run["dice_eager"] <= 1 and 0 <= run["dice_default_path"] <= 1
    assert bench["quality_mean_dice"] == quality["mean_dice_default_path"] == run["dice_default_path"]
    assert (out / "quality" / "seed0" / "eval_eager" / "eval" / "summary.json").is_file()
    assert (out / "quality" / "seed0" / "eval_default" / "eval" / "summary.json").is_file()
    assert "latency" not in bench and bench["peer_ratio"] is None


def test_time_side_by_side_interleaves_the_calls_after_their_warmup():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    timings = time_side_by_side(calls, repeats=3, warmup=2)
    assert order == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3
    for timing in timings.values():
        assert len(timing["runs"]) == 3 and timing["min"] <= timing["median"] <= timing["max"]
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_side_by_side(calls, repeats=0)


def test_default_path_is_what_inference_json_selects_on_this_cpu(monkeypatch):
    import nerveseg.bundle.inferers as inferers

    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: False)
    assert performance._default_path(CONFIGS)["name"] == "channels_last fp32"
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: True)
    expected = "channels_last + bf16" if inferers.torch.backends.mkldnn.is_available() else "channels_last fp32"
    assert performance._default_path(CONFIGS)["name"] == expected


def test_unknown_parts_and_missing_data_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"Unknown parts \['speed'\]; choose from latency, asme"):
        performance.bench("speed", out=str(tmp_path))
    with pytest.raises(SystemExit, match=r"nowhere not found; pass --data"):
        performance.bench("quality", out=str(tmp_path), bundle_root=str(BUNDLE_ROOT), data="nowhere")


def test_onnx_runtime_path_matches_the_network(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime comes with the benchmark extra")
    network = performance._network([CONFIGS / "train.json"], {})
    run, export_s = performance._onnx_session([CONFIGS / "train.json"], {}, network, (64, 64), tmp_path)
    assert export_s > 0 and not list(tmp_path.iterdir())  # the exported files lived in a scratch folder
    for batch in (1, 3):  # exported at batch 1, run at any batch
        images = torch.rand(batch, 1, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(run(images), network(images), atol=1e-4, rtol=1e-4)


def test_compiled_path_matches_the_network_in_bfloat16():
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()
    images = torch.rand(1, 1, 16, 16)
    call, compile_s = performance._compiled_call(network, images)
    assert compile_s > 0
    with torch.no_grad():
        torch.testing.assert_close(call(), network(images), atol=0.05, rtol=0.05)
