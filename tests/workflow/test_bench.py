"""``nerveseg bench``: the quick suite fills every headline number; each part runs alone through the real configs
(no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import torch

from conftest import BUNDLE_ROOT, SHARED_DATA, nerve_folders
from nerveseg.bundle import runs
from nerveseg.bundle.data.prepare import prepare
from nerveseg.scripts.bench import bench, execution_paths
from nerveseg.scripts.bench.asme_curve import asme_curve
from nerveseg.scripts.bench.inference_comparison import inference_comparison
from nerveseg.scripts.bench.latency import timed_paths
from nerveseg.scripts.bench.league import DATASETS, league, prepare_split
from nerveseg.scripts.bench.league_table import SYSTEMS, VIEWS
from nerveseg.scripts.bench.recipe_variants import recipe
from nerveseg.scripts.bench.suite import HEADLINES


@pytest.mark.slow
def test_quick_suite_writes_bench_json_with_the_headline_numbers(tmp_path):
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "nerveseg.scripts.cli", "bench", "--quick", "--out", str(out)]
    result = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    bench_json = json.loads((out / "bench.json").read_text())
    top = ["machine", "cpu_isa", "quick", "backend", "default_path", *HEADLINES]
    assert list(bench_json)[: len(top)] == top
    assert bench_json["quick"] is True and bench_json["cpu_isa"] == bench_json["machine"]["cpu_isa"]
    assert bench_json["backend"] == bench_json["default_path"]["backend"]
    assert bench_json["quickstart_seconds"] is None  # quick mode runs the Quick start only when it is named
    assert 0 < bench_json["trainer_overhead_ratio"] and 0 < bench_json["asme_full_ratio_cpu"]
    assert bench_json["machine"]["threads"] >= 1 and bench_json["machine"]["torch"]
    assert bench_json["fast_vs_eager_ratio"] > 0 and bench_json["asme_ratio_cpu"] > 0
    assert 0 <= bench_json["data_wait_fraction"] < 1
    assert 0 < bench_json["live_ms_p50"] <= bench_json["live_ms_p99"] and bench_json["live"]["size"] == [224, 288]
    assert bench_json["live"]["path"].startswith(f"{bench_json['live']['backend']} ")  # e.g. "openvino bfloat16"
    assert bench_json["quality_mean_dice"] is None  # quick mode runs quality only when it is named
    assert bench_json["int8_dice_delta"] is None and bench_json["int8_speedup"] is None
    if importlib.util.find_spec("segmentation_models_pytorch") is None:
        assert bench_json["peer_ratio"] is None and "benchmark extra" in bench_json["peer"]["skipped"]
    else:
        assert bench_json["peer_ratio"] > 0 and bench_json["peer"]["parameters"]["smp"] > 0
    paths = {row["path"] for row in bench_json["latency"]}
    assert set(timed_paths(quick=True)) == paths and bench_json["default_path"]["name"] in paths
    assert all(row["min"] <= row["median"] <= row["max"] for row in bench_json["latency"])
    assert bench_json["training"]["image_size"] == [448, 576] and bench_json["training"]["steps"] >= 1
    table = (out / "bench.md").read_text()
    assert table.startswith("# nerveseg bench\n") and "| `fast_vs_eager_ratio` |" in table and "quick mode" in table
    assert f"224x288, {bench_json['live']['path']})" in table
    assert (out / "training" / "outputs" / "train.log").is_file()  # the throughput run went through train.json


@pytest.mark.slow
def test_quality_part_trains_and_evaluates_both_paths(tmp_path):
    data = nerve_folders(tmp_path / "usgra_like")
    out = tmp_path / "bench"
    bench("quality", out=str(out), quick=True, bundle_root=str(BUNDLE_ROOT), data=str(data))
    result = json.loads((out / "quality.json").read_text())
    quality = result["quality"]
    assert [run["seed"] for run in quality["runs"]] == [0] and quality["image_size"] == [64, 64]
    run = quality["runs"][0]
    assert 0 <= run["dice_eager"] <= 1 and 0 <= run["dice_default_path"] <= 1
    assert result["quality_mean_dice"] == quality["mean_dice_default_path"] == run["dice_default_path"]
    assert (out / "quality" / "seed0" / "eval_eager" / "eval" / "summary.json").is_file()
    assert (out / "quality" / "seed0" / "eval_default" / "eval" / "summary.json").is_file()
    assert set(HEADLINES) & set(result) == {"quality_mean_dice", "asme_ratio_cpu", "int8_dice_delta", "int8_speedup"}
    assert "latency" not in result
    if importlib.util.find_spec("nncf") is None:
        assert result["int8_speedup"] is None and "int8 extra" in run["int8"]["skipped"]
    else:
        assert result["int8_dice_delta"] == run["int8"]["dice_change"] and result["int8_speedup"] > 0
    curve = result["asme_curve"]  # the early stop's cost on the validation images, with the first seed's network
    assert curve["seed"] == 0 and [p["stop_agreement"] for p in curve["points"]][-1] is None
    shipped = next(p for p in curve["points"] if p["stop_agreement"] == 0.9)
    assert result["asme_ratio_cpu"] == shipped["x_one_view"] > 0
    assert (out / "quality.md").read_text().startswith("# nerveseg bench quality\n")
    assert not (out / "bench.json").exists()


@pytest.mark.slow
def test_recipe_and_inference_parts_run_the_bundle_in_process(tmp_path):
    datalist = tmp_path / "data" / "datalist.json"
    prepare("folders", src=str(nerve_folders(tmp_path / "usgra_like", count=15)), out=str(datalist), target_class=1)
    out = tmp_path / "bench"
    rows = recipe(str(datalist), str(BUNDLE_ROOT), image_size=(64, 64), num_epochs=2, seeds=(0,), out=str(out))
    assert [row["variant"] for row in rows] == ["default", "EMS", "SWA"]
    assert all(row["best"] is not None and row["best"] >= row["last"] for row in rows)
    assert rows[2]["swa"] is not None and rows[0]["swa"] is None
    default_log = (out / "recipe" / "default" / "seed0" / "outputs" / "train.log").read_text()
    assert default_log.count("Metrics -- val_mean_dice") == 2  # the later runs did not log into it
    assert "| SWA |" in (out / "recipe.md").read_text()
    again = recipe(
        str(datalist), str(BUNDLE_ROOT), image_size=(64, 64), num_epochs=2, seeds=(0,), out=str(out), reuse=True
    )
    assert again == rows  # every row kept: nothing trained again

    ckpt_dir = out / "recipe" / "default" / "seed0" / "models"
    rows = inference_comparison(str(datalist), str(ckpt_dir), str(BUNDLE_ROOT), image_size=(64, 64), out=str(out))
    assert [row["inferer"] for row in rows] == ["single view", "flip TTA (mean)", "ASME"]
    for row in rows:
        assert 0 <= row["default"] <= 1 and 0 <= row["tuned"] <= 1 and 0 < row["threshold"] < 1
        slug = row["inferer"].split(" ")[0].lower()
        tuned = json.loads((out / "inference" / f"{slug}_tuning" / "eval" / "postprocessing.json").read_text())
        assert tuned == {key: row[key] for key in ("threshold", "min_area", "gate_threshold")}
    assert "ASME consistency vs Dice" in (out / "inference.md").read_text()

    curve = asme_curve(
        str(datalist), [str(ckpt_dir / "last.pt"), str(ckpt_dir / "model.pt")], [64, 64], str(BUNDLE_ROOT),
        stop_agreements=[0.9, None], repeats=1, out=str(out),
    )  # fmt: skip
    assert [row["stop_agreement"] for row in curve["summary"]] == [0.9, None] and len(curve["curves"]) == 2
    validation = len(json.loads(datalist.read_text())["validation"])
    assert curve["split"] == "validation" and all(c["images"] == validation for c in curve["curves"])
    stop, full = curve["summary"]
    low, high = stop["dice_minus_full_interval"]
    assert low <= stop["dice_minus_full"] <= high
    assert (
        full["dice_minus_full"] == 0
        and full["dice_minus_full_interval"] == [0, 0]
        and full["tolerance_shown"]
        and full["mean_views_used"] == 4
        and full["meets_target"] == (full["x_one_view"] <= 2.5)
    )
    assert "| full (every view) | +0.0000 ± 0.0000 | [+0.0000, +0.0000] |" in (out / "asme_curve.md").read_text()


@pytest.mark.slow
def test_onnx_runtime_path_matches_the_network(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime comes with the benchmark extra")
    files = runs.config_files(BUNDLE_ROOT, "configs/train.json")
    network = runs.build_network(files)
    run, export_s = execution_paths.onnx_session(files, {}, network, (64, 64), tmp_path)
    assert export_s > 0 and not list(tmp_path.iterdir())  # the exported files lived in a scratch folder
    for batch in (1, 3):  # exported at batch 1, run at any batch
        images = torch.rand(batch, 1, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(run(images), network(images), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_compiled_path_matches_the_network_in_bfloat16():
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()
    images = torch.rand(1, 1, 16, 16)
    call, compile_s = execution_paths.compiled_call(network, images)
    assert compile_s > 0
    with torch.no_grad():
        torch.testing.assert_close(call(), network(images), atol=0.05, rtol=0.05)


@pytest.mark.slow
def test_quick_league_runs_every_system_then_skips_what_it_has(tmp_path):
    for module in ("segmentation_models_pytorch", "nnunetv2"):
        pytest.importorskip(module, reason="the league's peers come with the benchmark extra")
    dataset = "usgra_seg"  # the flagship; dsb2018 runs the same code with other prepare options and epochs
    if not (SHARED_DATA / dataset / "images").is_dir():
        pytest.skip(f"the league's real data set {dataset} is not at {SHARED_DATA}")
    options = {"data_root": str(SHARED_DATA), "out": str(tmp_path), "bundle_root": str(BUNDLE_ROOT), "quick": True}
    result = league(datasets=[dataset], **options)
    assert result["quick"] is True
    saved = json.loads((tmp_path / "league_quick.json").read_text())
    assert list(saved) == ["machine", "quick", "settings", "rows", "summary"]
    assert list(saved["summary"]) == [dataset] and list(saved["summary"][dataset]) == list(SYSTEMS)  # nnU-Net too
    rows = saved["rows"]
    assert sorted((r["system"], r["views"]) for r in rows) == sorted((s, v) for s in SYSTEMS for v in VIEWS)
    test_images = saved["settings"][dataset]["test_images"]
    assert test_images and all(len(r["image_dice"]) == len(test_images) for r in rows)
    assert all(0.0 <= d <= 1.0 for r in rows for d in r["image_dice"])
    assert all(r["train_seconds"] > 0 for r in rows)
    assert all("difference" in saved["summary"][dataset][s]["4"] for s in SYSTEMS[1:])
    assert "QUICK smoke run: not a result" in (tmp_path / "league_quick.md").read_text()
    league(datasets=[dataset], **options)  # every run skipped
    assert json.loads((tmp_path / "league_quick.json").read_text())["rows"] == rows
    assert not (tmp_path / "league.json").exists()  # a full league beside it is left alone


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_each_league_data_set_prepares_in_quick_mode_with_its_own_options(dataset, tmp_path):
    if not (SHARED_DATA / dataset / "images").is_dir():
        pytest.skip(f"the league's real data set {dataset} is not at {SHARED_DATA}")
    datalist = prepare_split(SHARED_DATA / dataset, tmp_path / dataset, DATASETS[dataset]["prepare"], quick=True)
    split = json.loads(datalist.read_text())
    assert split["training"] and split["test"]
    assert all((datalist.parent / item["label"]).is_file() for item in split["training"] + split["test"])


@pytest.mark.slow
def test_live_part_times_each_backend_frame_by_frame(tmp_path):
    from nerveseg.scripts.bench.live_latency import LIVE_PATHS, live_latency

    result = live_latency(out=str(tmp_path), sizes=[[64, 96]], quick=True)
    backends = [row["backend"] for row in result["rows"]]
    assert backends[0] == "torch (inference.json)" and set(backends) <= set(LIVE_PATHS)
    assert result["frame_size"] == [420, 580] and all(row["frames"] == 5 for row in result["rows"])
    assert all(0 < row["p50_ms"] <= row["p99_ms"] for row in result["rows"])
    assert all(row["path"].split()[0] == row["backend"].split()[0] for row in result["rows"])  # what really ran
    assert "openvino float32" in {row["path"] for row in result["rows"]} or backends == ["torch (inference.json)"]
    torch_row = result["rows"][0]
    assert f"| 64x96 | torch (inference.json) | {torch_row['path']} |" in (tmp_path / "live.md").read_text()


@pytest.mark.slow
def test_live_recipe_part_trains_scores_and_quantizes_each_recipe_once(tmp_path):
    pytest.importorskip("nncf", reason="int8 comes with the int8 extra")
    from nerveseg.scripts.bench.live_recipe import BASELINE, CANDIDATE, live_recipe

    options = {"data_root": str(SHARED_DATA), "out": str(tmp_path), "bundle_root": str(BUNDLE_ROOT), "quick": True}
    # the last recipe overrides the network, which scoring and quantizing must take too
    recipes = [BASELINE, CANDIDATE, "live at twice the width"]
    result = live_recipe(recipes=recipes, **options)
    rows = {row["recipe"]: row for row in result["rows"]}
    assert set(rows) == set(recipes) and all("int8" not in row for row in rows.values())
    datalist = json.loads((tmp_path / "live_recipe_quick" / "data" / "datalist.json").read_text())
    assert [len(rows[BASELINE]["dice"][split]) for split in ("validation", "test")] == [
        len(datalist["validation"]),
        len(datalist["test"]),
    ]
    change = result["comparison"][CANDIDATE]["test"]
    assert change["low"] <= change["mean"] <= change["high"]
    assert change["num_images"] == len(rows[BASELINE]["dice"]["test"]) and set(change["half_width_from"]) == {
        "seeds",
        "images",
    }

    again = live_recipe(recipes=recipes, int8=True, **options)  # no training: int8 figures only
    assert [row["train_seconds"] for row in again["rows"]] == [row["train_seconds"] for row in result["rows"]]
    for row in again["rows"]:
        assert row["int8"]["dice_change"] == pytest.approx(row["int8"]["dice_int8"] - row["int8"]["dice_float32"])
        assert row["int8"]["speedup"] > 0
    assert re.search(r"\| live \(configs/live.json\) \| [01]/1 \|", (tmp_path / "live_recipe_quick.md").read_text())


@pytest.mark.slow
def test_live_smoothing_part_pairs_each_weight_with_no_smoothing(tmp_path, tiny_dataset):
    from conftest import TINY_NETWORK, tiny_checkpoint
    from nerveseg.scripts.bench.live_smoothing import live_smoothing

    checkpoint = tiny_checkpoint(tmp_path / "models", [32, 48])
    result = live_smoothing(
        str(checkpoint),
        str(tiny_dataset),
        configs=["configs/inference.json"],
        smoothings=[0.5],
        bundle_root=str(BUNDLE_ROOT),
        out=str(tmp_path),
        overrides={"network_def": TINY_NETWORK, "inference_backend": "torch"},
    )
    assert [row["smoothing"] for row in result["rows"]] == [0.0, 0.5]
    assert result["rows"][0]["change"] == [0.0, 0.0, 0.0] and result["frames"] > len(result["subjects"])
    assert "| 0.5 |" in (tmp_path / "live_smoothing.md").read_text()
