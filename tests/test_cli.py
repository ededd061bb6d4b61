"""The ``nerveseg`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NERVESEG = Path(sys.executable).with_name("nerveseg")  # the console script installed beside this Python


def test_synth_writes_a_dataset(tmp_path):
    out = tmp_path / "synthetic"
    args = ["synth", "--out", str(out), "--num_subjects", "2", "--frames_per_subject", "3", "--num_test_images", "1"]
    result = subprocess.run([NERVESEG, *args], capture_output=True, text=True, check=True)
    assert str(out) in result.stdout
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["num_train_frames"] == 6
    assert len(list((out / "train").glob("*_mask.tif"))) == 6
    assert [p.name for p in (out / "test").iterdir()] == ["1.tif"]


def test_gate_refuses_an_unreadable_checkpoint(tmp_path):
    (tmp_path / "segmenter.pt").write_bytes(b"not a checkpoint")
    args = ["gate", tmp_path / "segmenter.pt", tmp_path / "classifier.pt", tmp_path / "gated" / "model.pt"]
    result = subprocess.run([NERVESEG, *map(str, args)], capture_output=True, text=True)
    assert result.returncode != 0
    assert f"Cannot read segmenter checkpoint {tmp_path / 'segmenter.pt'}" in result.stderr
    assert not (tmp_path / "gated").exists()


def test_benchmark_networks_saves_its_table(tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark-networks", "--image_size", "[32, 32]", "--repeats", "1", "--out", str(out)]
    result = subprocess.run([NERVESEG, *args], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "networks.json").read_text())
    assert {"FlexibleUNet efficientnet-b1", "networks/munet.json"} <= {row["network"] for row in rows}
    assert all(row["parameters"] > 0 and row["gflops"] > 0 for row in rows)
    assert "| networks/munet.json |" in (out / "networks.md").read_text()


def test_recipe_benchmark_reads_best_last_and_swa_dice():
    from nerveseg.scripts.benchmarks import _read_run

    log = "\n".join(
        [
            "... - Epoch[1] Metrics -- val_mean_dice: 0.4000 ",
            "... - Epoch[2] Metrics -- val_mean_dice: 0.6500 ",
            "... - Epoch[3] Metrics -- val_mean_dice: 0.6000 ",
            "... - SWA: saved the mean of 2 epochs to models/model_swa.pt",
            "... - Epoch[3] Metrics -- val_mean_dice: 0.6700 ",
            "... - SWA over epochs 2-3 (2 snapshots, every 1): val val_mean_dice 0.6700 vs best epoch 2 0.6500",
        ]
    )
    assert _read_run(log) == {"best": 0.65, "last": 0.6, "swa": 0.67}
    assert _read_run("") == {"best": None, "last": None, "swa": None}
