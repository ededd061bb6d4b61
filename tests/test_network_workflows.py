"""One epoch of training per network, and the two-stage model end to end, through the real configs on tiny data."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys

import pytest

from conftest import CONFIGS, run_bundle, tiny_run_overrides

TRAIN = CONFIGS / "train.json"
NETWORKS = sorted(p for p in (CONFIGS / "networks").glob("*.json") if p.stem != "presence_gated")


def _overrides(dataset, work) -> list[str]:
    return ["--dataset_dir", str(dataset), *tiny_run_overrides(work)]


def _configs(*paths) -> list[str]:
    return ["--config_file", json.dumps([str(p) for p in paths])]


@pytest.mark.parametrize("network", NETWORKS, ids=lambda p: p.stem)
def test_one_epoch_of_training(network, tiny_dataset, tmp_path):
    run_bundle("run", "training", *_configs(TRAIN, network), *_overrides(tiny_dataset, tmp_path), cwd=tmp_path)
    assert (tmp_path / "models" / "model.pt").is_file()
    assert "val_mean_dice" in (tmp_path / "outputs" / "train.log").read_text()


def _nerveseg(*args: str, cwd) -> str:
    command = [sys.executable, "-m", "nerveseg.scripts.cli", *map(str, args)]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_two_stage_model(tiny_dataset, tmp_path):
    """Train the segmenter and the classifier, join them, tune the gate on validation, then evaluate and infer."""
    overrides = _overrides(tiny_dataset, tmp_path)
    run_bundle("run", "training", *_configs(TRAIN), *overrides, cwd=tmp_path)
    classifier = [*overrides, "--ckpt_dir", str(tmp_path / "models" / "presence")]
    run_bundle("run", "training", *_configs(TRAIN, CONFIGS / "presence_classifier.json"), *classifier, cwd=tmp_path)
    assert "val_auc" in (tmp_path / "outputs" / "train.log").read_text()

    models = tmp_path / "models"
    gated = models / "gated" / "model.pt"
    _nerveseg("gate", models / "model.pt", models / "presence" / "model.pt", gated, cwd=tmp_path)
    gated_configs = [TRAIN, CONFIGS / "evaluate.json", CONFIGS / "networks" / "presence_gated.json"]
    stacked = [*overrides, "--ckpt_dir", str(gated.parent)]
    run_bundle("run", "evaluating", *_configs(*gated_configs), *stacked, cwd=tmp_path)
    with open(tmp_path / "outputs" / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(0.0 < float(row["presence"]) < 1.0 for row in rows)

    override = tmp_path / "outputs" / "eval" / "postprocessing.json"
    tune = ["tune-postprocessing", "--config_file", json.dumps([str(p) for p in gated_configs]), "--out", override,
            f"--overrides={shlex.join(stacked)}"]  # fmt: skip
    printed = _nerveseg(*tune, cwd=tmp_path)
    assert "presence gate searched" in printed and "tuned" in printed
    assert set(json.loads(override.read_text())) == {"threshold", "min_area", "gate_threshold"}

    inference = _configs(CONFIGS / "inference.json", CONFIGS / "networks" / "presence_gated.json", override)
    out = tmp_path / "predictions"
    infer = [*overrides[:4], "--ckpt_dir", str(gated.parent), "--output_dir", str(out), "--image_size", "[64, 96]"]
    run_bundle("run", "inference", *inference, *infer, "--num_workers", "0", cwd=tmp_path)
    assert len(list(out.glob("*_mask.tif"))) == len(list((tiny_dataset / "test").glob("*.tif")))
