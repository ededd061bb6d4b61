"""One epoch of training per network, its TorchScript export, and the two-stage model end to end, through the real
configs on tiny data."""

from __future__ import annotations

import csv
import json
import shlex

import pytest

from conftest import CONFIGS, as_arguments, assert_export_reloads, run_workflow, tiny_overrides
from nerveseg.scripts import cli

pytestmark = pytest.mark.slow

TRAIN = CONFIGS / "train.json"
NETWORK_FILES = sorted((CONFIGS / "networks").glob("*.json"))
NETWORKS = [p for p in NETWORK_FILES if p.stem != "presence_gated"]


@pytest.mark.parametrize("network", NETWORKS, ids=lambda p: p.stem)
def test_one_epoch_of_training(network, tiny_dataset, tmp_path):
    run_workflow("training", [TRAIN, network], dataset_dir=str(tiny_dataset), **tiny_overrides(tmp_path))
    assert (tmp_path / "models" / "model.pt").is_file()
    assert "val_mean_dice" in (tmp_path / "outputs" / "train.log").read_text()


def test_two_stage_model(tiny_dataset, tmp_path, capsys):
    """Train the segmenter and the classifier, join them, tune the gate on validation, then evaluate and infer."""
    overrides = {"dataset_dir": str(tiny_dataset), **tiny_overrides(tmp_path)}
    models = tmp_path / "models"
    run_workflow("training", [TRAIN], **overrides)
    classifier = {**overrides, "ckpt_dir": str(models / "presence")}
    run_workflow("training", [TRAIN, CONFIGS / "presence_classifier.json"], **classifier)
    assert "val_auc" in (tmp_path / "outputs" / "train.log").read_text()

    gated = models / "gated" / "model.pt"
    cli.gate(str(models / "model.pt"), str(models / "presence" / "model.pt"), str(gated))
    gated_configs = [TRAIN, CONFIGS / "evaluate.json", CONFIGS / "networks" / "presence_gated.json"]
    stacked = {**overrides, "ckpt_dir": str(gated.parent)}
    run_workflow("evaluating", gated_configs, **stacked)
    with open(tmp_path / "outputs" / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(0.0 < float(row["presence"]) < 1.0 for row in rows)

    override = tmp_path / "outputs" / "eval" / "postprocessing.json"
    capsys.readouterr()
    cli.tune(
        config_file=json.dumps([str(p) for p in [*gated_configs, CONFIGS / "tune.json"]]),
        out=str(override),
        overrides=shlex.join(as_arguments(stacked)),
    )
    printed = capsys.readouterr().out
    assert "presence gate searched" in printed and "tuned" in printed
    assert set(json.loads(override.read_text())) == {"threshold", "min_area", "gate_threshold"}

    out = tmp_path / "predictions"
    inference = [CONFIGS / "inference.json", CONFIGS / "networks" / "presence_gated.json", override]
    infer = {k: v for k, v in stacked.items() if k not in ("num_epochs", "batch_size")}
    run_workflow("inference", inference, **{**infer, "output_dir": str(out)})
    assert len(list(out.glob("*_mask.tif"))) == len(list((tiny_dataset / "test").glob("*.tif")))


@pytest.mark.parametrize("network", NETWORK_FILES, ids=lambda p: p.stem)
def test_torchscript_export_and_reload(network, tmp_path):
    """``ckpt_export`` (traced in eval mode) of a saved checkpoint gives the eager network's output.

    The default network's export (scripted, from inference.json) is tested in test_metadata.py.
    """
    assert_export_reloads([str(TRAIN), str(network)], tmp_path, use_trace=True, input_shape=[1, 1, 64, 96])
