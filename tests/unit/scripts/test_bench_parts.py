"""``nerveseg bench``: the part dispatcher, the selectable networks and the pieces the parts share (no runs)."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn

from conftest import BUNDLE_ROOT, nerve_folders
from nerveseg.bundle.inference.accelerated import resolve_precision
from nerveseg.networks.profile import time_side_by_side
from nerveseg.scripts.bench import PARTS, bench, network_table, part_function
from nerveseg.scripts.bench.active_learning_simulation import _summary_lines
from nerveseg.scripts.bench.asme_curve import _markdown as asme_curve_table
from nerveseg.scripts.bench.asme_curve import asme_curve, curve_summary
from nerveseg.scripts.bench.asme_timing import (
    ADAPTIVE,
    asme_curve_markdown,
    asme_dice_cost_curve,
    asme_markdown,
    shipped_asme,
)
from nerveseg.scripts.bench.execution_paths import PATHS, default_path
from nerveseg.scripts.bench.latency import timed_paths
from nerveseg.scripts.bench.machine import cpu_isa, describe_machine
from nerveseg.scripts.bench.quickstart import quickstart_markdown
from nerveseg.scripts.bench.recipe_variants import run_dice
from nerveseg.scripts.bench.results import mean_sd, ms, write_results
from nerveseg.scripts.bench.scoring import split_pairs, validation_dice_of_events
from nerveseg.scripts.bench.suite import HEADLINES, SUITE_PARTS, markdown
from nerveseg.scripts.bench.trainer_overhead import trainer_overhead_markdown
from nerveseg.utils.errors import UserInputError

TRAIN = BUNDLE_ROOT / "configs" / "train.json"


def test_every_part_and_its_options_are_in_the_help():
    doc = inspect.getdoc(bench)
    for part in PARTS:
        assert f"    {part}: " in doc, part
        for option in inspect.signature(part_function(part)).parameters:
            assert f"--{option}" in doc, (part, option)
    for option in inspect.signature(part_function(None)).parameters:
        assert f"--{option}" in doc
    assert set(SUITE_PARTS) <= set(PARTS)


def test_help_describes_the_suite_or_one_part(capsys):
    bench(help=True)  # what fire hands over for `nerveseg bench --help`
    assert "Parts:" in capsys.readouterr().out
    bench("latency", help=True)
    assert capsys.readouterr().out.startswith("Forward latency of every network config on every execution path")
    bench("recipe", help=True)
    assert "datalist_file: a prepared datalist" in capsys.readouterr().out


def test_unknown_parts_options_and_missing_data_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"bench part 'speed' is unknown; choose one of networks, latency, asme"):
        bench("speed", out=str(tmp_path))
    with pytest.raises(SystemExit, match=r"bench latency: .*'speed'.*its options are --out, --quick"):
        bench("latency", speed=1)
    with pytest.raises(UserInputError, match=r"nowhere not found; pass --data"):
        bench("quality", out=str(tmp_path), bundle_root=str(BUNDLE_ROOT), data="nowhere")
    with pytest.raises(UserInputError, match=r"configs/inference.json not found; paths are relative to --bundle_root"):
        bench("asme", out=str(tmp_path), bundle_root=str(tmp_path))
    from nerveseg.scripts.bench.suite import run_suite

    with pytest.raises(UserInputError, match=r"Unknown parts \['speed'\]; choose from latency, asme"):
        run_suite(["speed"], out=str(tmp_path))
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_network_variants_name_every_selectable_network():
    variants = network_table.network_variants(BUNDLE_ROOT)
    names = [name for name, _, _ in variants]
    assert names[0] == network_table.DEFAULT_NETWORK and variants[0][1:] == ([str(TRAIN)], {})
    assert names[1:9] == [f"FlexibleUNet efficientnet-b{i}" for i in range(8)]
    networks = sorted(p.name for p in (BUNDLE_ROOT / "configs" / "networks").glob("*.json"))
    networks.remove("flexible_unet.json")  # it is the FlexibleUNet rows
    assert names[9:-1] == [f"networks/{name}" for name in networks] and names[-1] == "presence_classifier.json"
    assert variants[1][2] == {"network_def#backbone": "efficientnet-b0"} and variants[2][2] == {}
    assert variants[2][1] == [str(TRAIN), str(BUNDLE_ROOT / network_table.FLEXIBLE_UNET_CONFIG)]
    for _, files, _ in variants:
        assert files[0] == str(TRAIN)


@pytest.mark.parametrize("openvino", [False, True])
def test_default_path_is_what_inference_json_selects_on_this_cpu(monkeypatch, openvino):
    import nerveseg.bundle.inference.accelerated as inferers
    import nerveseg.bundle.inference.backends as backends

    monkeypatch.setattr(backends, "openvino_available", lambda: openvino)
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: False)
    assert default_path(BUNDLE_ROOT)["name"] == ("openvino fp32" if openvino else "channels_last fp32")
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: True)
    bf16 = inferers.torch.backends.mkldnn.is_available()
    names = {False: ("channels_last fp32", "channels_last + bf16"), True: ("openvino fp32", "openvino bf16")}
    assert default_path(BUNDLE_ROOT)["name"] == names[openvino][bf16]


def test_quick_mode_times_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    import nerveseg.bundle.inference.accelerated as inferers
    import nerveseg.scripts.bench.latency as latency

    monkeypatch.setattr(latency, "unimportable", lambda module: "no openvino")
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: False)
    assert list(timed_paths(quick=True)) == ["eager fp32", "channels_last fp32"]
    assert list(timed_paths(quick=False)) == [name for name in PATHS if not name.startswith("openvino")]
    monkeypatch.setattr(inferers, "_cpu_has_bf16", lambda: True)
    bf16 = inferers.torch.backends.mkldnn.is_available()
    assert list(timed_paths(quick=True)) == list(timed_paths(quick=False)) or not bf16
    monkeypatch.setattr(latency, "unimportable", lambda module: None)
    monkeypatch.setattr(latency, "openvino_supports", lambda precision: False)
    assert list(timed_paths(quick=False)) == [name for name in PATHS if name != "openvino bf16"]


def test_time_side_by_side_interleaves_the_calls_after_their_warmup():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    timings = time_side_by_side(calls, repeats=3, warmup=2)
    assert order == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3
    for timing in timings.values():
        assert len(timing["runs"]) == 3 and timing["min"] <= timing["median"] <= timing["max"]
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_side_by_side(calls, repeats=0)


def test_results_are_written_as_json_and_markdown(tmp_path, capsys):
    json_path, md_path = write_results(tmp_path / "out", "part", {"a": [1, 2]}, "| a |\n")
    assert json.loads(json_path.read_text()) == {"a": [1, 2]} and md_path.read_text() == "| a |\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part.json", "part.md"]  # no temporary left
    assert f"Saved {json_path} and {md_path}" in capsys.readouterr().out
    assert ms({"median": 0.0125, "min": 0.01, "max": 0.02}) == "12 [10, 20]"
    assert mean_sd([0.5, 0.7]) == "0.6000 ± 0.1414" and mean_sd([0.1], signed=True) == "+0.1000 ± n/a"
    assert mean_sd([]) == "-"


def test_bench_md_keeps_its_headline_table():
    results = {
        "machine": {"summary": "today, a CPU"},
        "quick": True,
        "default_path": {"name": "channels_last fp32"},
        **dict.fromkeys(HEADLINES),
        "fast_vs_eager_ratio": 0.5,
        "asme_ratio_gpu": 1.25,
    }
    lines = markdown(results).splitlines()
    assert lines[:4] == [
        "# nerveseg bench",
        "",
        "Measured today, a CPU (quick mode: few repetitions, do not quote).",
        "",
    ]
    assert lines[4:13] == [
        "| headline | value |",
        "|---|---:|",
        "| `peer_ratio` | - |",
        "| `fast_vs_eager_ratio` | 0.500 |",
        "| `asme_ratio_cpu` | - |",
        "| `asme_ratio_gpu` | 1.250 |",
        "| `asme_full_ratio_cpu` | - |",
        "| `trainer_overhead_ratio` | - |",
        "| `data_wait_fraction` | - |",
    ]
    assert "Default inference path (configs/inference.json on this machine): channels_last fp32." in lines
    part = markdown({**results, "quick": False, "asme_ratio_gpu": None}, "nerveseg bench latency").splitlines()
    assert part[0] == "# nerveseg bench latency" and part[2] == "Measured today, a CPU."


def test_recipe_benchmark_reads_best_last_and_swa_dice():
    assert run_dice([0.4, 0.65, 0.6, 0.67], swa=0.67) == {"best": 0.65, "last": 0.6, "swa": 0.67}  # SWA's comes last
    assert run_dice([0.4, 0.65, 0.6], swa=None) == {"best": 0.65, "last": 0.6, "swa": None}
    assert run_dice([], swa=None) == {"best": None, "last": None, "swa": None}


def test_simulation_table_pairs_seeds():
    rows = [
        {"seed": s, "strategy": k, "labelled": n, "dice": d}
        for s, k, n, d in [(0, "asme", 20, 0.5), (0, "random", 20, 0.5), (0, "asme", 40, 0.7), (0, "random", 40, 0.6)]
        + [(1, "asme", 20, 0.4), (1, "random", 20, 0.4), (1, "asme", 40, 0.5), (1, "random", 40, 0.6)]
    ]
    lines = _summary_lines(rows, ("asme", "random"))
    assert lines[2].startswith("| 20 | 0.4500 ± 0.0707 | 0.4500 ± 0.0707 | +0.0000 ± 0.0000 |")
    assert lines[3] == "| 40 | 0.6000 ± 0.1414 | 0.6000 ± 0.0000 | +0.0000 ± 0.1414 |"
    assert _summary_lines(rows, ("random",))[0] == "| labelled | random, mean ± sd |"


def test_simulation_refuses_bad_settings_before_any_work(tmp_path):
    from nerveseg.scripts.bench.active_learning_simulation import simulate

    with pytest.raises(UserInputError, match=r"Unknown strategies \['best'\]; choose from \['asme', 'random'\]"):
        simulate(out=str(tmp_path), strategies=("best",))
    with pytest.raises(UserInputError, match="Need initial >= 1, step >= 1 and max_labelled >= initial; got 8, 4, 4"):
        simulate(out=str(tmp_path), initial=8, step=4, max_labelled=4)
    with pytest.raises(UserInputError, match="USGRA-seg not found at nowhere; pass --src"):
        simulate(src="nowhere", out=str(tmp_path), bundle_root=str(BUNDLE_ROOT))
    assert not list(tmp_path.iterdir())


def test_asme_dice_cost_curve_scores_each_stop_agreement_against_one_view():
    threshold_at_half = nn.Conv2d(1, 1, 1)  # logits 20 (x - 0.5): every flipped view agrees
    threshold_at_half.weight.data.fill_(20.0)
    threshold_at_half.bias.data.fill_(-10.0)
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    empty = torch.zeros(1, 16, 16)
    pairs = [(image, (image > 0.5).float()), (empty, torch.zeros(1, 32, 32))]  # a label at another size
    curve = asme_dice_cost_curve(threshold_at_half, pairs, stop_agreements=(0.9, None), repeats=1)
    assert curve["images"] == 2 and curve["one_view"]["mean_dice"] == 1.0
    first, full = curve["points"]
    assert (first["stop_agreement"], first["mean_views_used"], first["dice_minus_full"]) == (0.9, 2, 0.0)
    assert (full["stop_agreement"], full["mean_views_used"], full["mean_dice"]) == (None, 4, 1.0)
    assert all(point["x_one_view"] > 0 and point["ms_per_image"] > 0 for point in curve["points"])
    assert full["dice_per_image"] == [1.0, 1.0]  # in the pairs' order, for paired intervals
    assert curve["path"]["resolved"] == "torch float32"
    lines = asme_curve_markdown(curve)
    assert lines[0].startswith("ASME's early stop on 2 images, batch 1, cpu, torch float32; time is the median of 1")
    assert lines[2] == "| stop agreement | mean Dice | Dice - full ASME | mean views used | ms per image | x 1 view |"
    assert lines[4].startswith("| 0.9 | 1.0000 | +0.0000 | 2.00 |")
    assert lines[5].startswith("| full (every view) | 1.0000 | +0.0000 | 4.00 |")
    assert lines[6].startswith("| 1 view | 1.0000 | | 1.00 |")
    with pytest.raises(ValueError, match="pairs is empty"):
        asme_dice_cost_curve(threshold_at_half, [])


def test_asme_dice_cost_curve_records_what_the_settings_ran_as_on_this_machine():
    pairs = [(torch.rand(1, 16, 16), torch.zeros(1, 16, 16))]
    native = str(resolve_precision("auto", "cpu")).removeprefix("torch.")  # bfloat16 only where the CPU has it

    def resolved(network: nn.Module, **settings) -> str:
        return asme_dice_cost_curve(network, pairs, (None,), settings=settings, repeats=1)["path"]["resolved"]

    assert resolved(nn.Conv2d(1, 1, 1), backend="torch", precision="auto", channels_last=True) == (
        f"torch {native} channels-last"
    )
    assert resolved(nn.Conv2d(1, 1, 1), backend="torch", precision="int8", channels_last=False) == "torch float32"
    pytest.importorskip("openvino", reason="the openvino backend needs the openvino package, a dependency")
    assert resolved(nn.Conv2d(1, 1, 1), backend="auto", precision="auto", channels_last=True) == f"openvino {native}"


def test_split_pairs_are_network_size_images_and_original_size_labels(tmp_path):
    from nerveseg.bundle.data.prepare import prepare

    datalist = tmp_path / "prepared" / "datalist.json"
    prepare("folders", src=str(nerve_folders(tmp_path / "src", 10)), out=str(datalist), target_class=1)
    pairs = split_pairs(BUNDLE_ROOT, datalist, [32, 48])
    assert len(pairs) == len(json.loads(datalist.read_text())["validation"]) > 0
    for image, label in pairs:
        assert image.shape == (1, 32, 48) and label.shape == (1, 64, 64)
        assert set(label.unique().tolist()) <= {0.0, 1.0}


def test_asme_table_shows_the_shipped_early_stop():
    assert (
        shipped_asme(BUNDLE_ROOT).stop_agreement
        == json.loads((BUNDLE_ROOT / "configs" / "asme.json").read_text())["asme_stop_agreement"]
    )
    timing = {"median": 0.1, "min": 0.09, "max": 0.12}
    result = {"device": "cpu", "1 view": timing, "4 views batched": {**timing, "median": 0.3}}
    assert asme_markdown(result)[-1] == "| 4 views batched | 300 [90, 120] | 3.00 |"  # results without the stop
    result.update({ADAPTIVE: {**timing, "median": 0.2}, "adaptive_stop_agreement": 0.9, "adaptive_views_used": 2})
    lines = asme_markdown(result)
    assert "| adaptive (asme.json) | 200 [90, 120] | 2.00 |" in lines
    assert lines[-1].startswith("The adaptive row (`asme_stop_agreement` 0.9) computed 2 views on this random image")


def test_quickstart_reads_each_epochs_validation_dice_from_the_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path)) as writer:  # as train.json's TensorBoardStatsHandler writes them
        for epoch, dice in ((2, 0.74538), (1, 0.58891)):
            writer.add_scalar("val_mean_dice", dice, epoch)
            writer.add_scalar("train_loss", 1.0, epoch)
    assert validation_dice_of_events(tmp_path) == [0.5889, 0.7454]
    assert validation_dice_of_events(tmp_path / "none") == []
    line = quickstart_markdown(
        {"seconds": 412.3, "validation_dice": [0.5, 0.9, 0.8], "best_dice": 0.9, "best_epoch": 2, "last_dice": 0.8}
    )[0]
    assert "412 s" in line and "0.900 at epoch 2" in line and "last 0.800" in line


def test_cpu_isa_names_the_vector_class_of_this_machine():
    assert cpu_isa() in ("avx512_bf16", "avx512", "avx2", "other")
    machine = describe_machine()
    assert machine["cpu_isa"] == cpu_isa() and cpu_isa() in machine["summary"]


def test_trainer_overhead_table_compares_with_both_bare_loops():
    result = {
        "image_size": [128, 160],
        "batch_size": 8,
        "steps": 10,
        "network": "FlexibleUNet",
        "channels_last": True,
        "step_s": {"trainer": 1.1, "bare channels-last": 1.0, "bare contiguous": 1.25},
        "trainer_overhead_ratio": 1.1,
        "vs_bare_contiguous": 0.88,
    }
    table = "\n".join(trainer_overhead_markdown(result))
    assert "| trainer | 1.100 | 1.10 |" in table and "| bare contiguous | 1.250 | 1.25 |" in table
    assert "0.88x a bare loop in default memory order" in table


def test_a_missing_benchmark_library_is_named_with_the_install_command():
    from nerveseg.scripts.bench.machine import require_benchmark_extra, unimportable

    assert unimportable("json") is None
    assert "install the benchmark extra: pip install -e '.[benchmark]'" in unimportable("no_such_module_here")
    require_benchmark_extra("The league", "json")
    with pytest.raises(UserInputError, match=r"The league needs no_such_module_here: install the benchmark extra, pip"):
        require_benchmark_extra("The league", "json", "no_such_module_here")


def test_asme_curve_pairs_each_checkpoints_images_with_its_own_full_asme():
    def curve(full: list[float], shift: dict[float, float], cost: float) -> dict:
        points = [
            {"stop_agreement": stop, "dice_per_image": [d + delta for d in full], "x_one_view": cost,
             "mean_views_used": 2.0, "dice_minus_full": delta}
            for stop, delta in shift.items()
        ]  # fmt: skip
        full_point = {"stop_agreement": None, "dice_per_image": full, "x_one_view": 4.0, "mean_views_used": 4.0}
        return {"images": len(full), "points": [*points, {**full_point, "dice_minus_full": 0.0}]}

    shifts = {0.7: -0.001, 0.8: -0.01}
    curves = [curve([0.2, 0.9, 0.4], shifts, 2.0), curve([0.6, 0.1, 0.8], shifts, 2.2)]  # unpaired, they differ
    close, far, full = curve_summary(curves, [0.7, 0.8, None], max_cost=2.5, dice_tolerance=0.002)
    assert close["dice_minus_full"] == pytest.approx(-0.001) and close["x_one_view"] == pytest.approx(2.1)
    assert close["dice_minus_full_interval"] == pytest.approx([-0.001, -0.001])
    assert close["meets_target"] and close["tolerance_shown"]
    assert far["dice_minus_full_interval"] == pytest.approx([-0.01, -0.01])
    assert not far["meets_target"] and not far["tolerance_shown"]
    assert full["dice_minus_full_interval"] == [0.0, 0.0] and not full["meets_target"]  # 4x one view
    result = {
        "machine": {"summary": "a test"}, "image_size": [8, 8], "split": "test", "datalist_file": "d.json",
        "target": {"max_cost": 2.5, "dice_tolerance": 0.002}, "curves": curves, "summary": [close, far, full],
    }  # fmt: skip
    lines = asme_curve_table(result)
    assert "test split of d.json (3 images)" in lines[2]
    assert lines[-3] == "| 0.7 | -0.0010 ± 0.0000 | [-0.0010, -0.0010] | 2.10 | 2.00 | met, shown |"
    assert lines[-2].endswith("| 2.00 | - |")
    with pytest.raises(UserInputError, match="--split is 'training'; pass validation"):
        asme_curve("d.json", [], [8, 8], split="training")
