"""``nerveseg tune``: the tuning workflow of configs/tune.json through the command, in this process."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import BUNDLE_ROOT, CONFIGS
from nerveseg.scripts.cli import tune
from nerveseg.utils.errors import UserInputError

TUNE_STACK = [str(CONFIGS / name) for name in ("train.json", "evaluate.json", "tune.json")]


def test_tune_command_runs_the_tuning_workflow(tiny_dataset, tmp_path, capsys):
    """``nerveseg tune`` through the real configs, on a random-weight checkpoint of the default network."""
    parser = ConfigParser()
    parser.read_config(TUNE_STACK)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "model.pt")
    overrides = (
        f"--bundle_root {BUNDLE_ROOT} --dataset_dir {tiny_dataset} --ckpt_dir {tmp_path} "
        f"--output_dir {tmp_path / 'outputs'} --image_size '[64, 96]' --num_workers 0"
    )
    out = tmp_path / "tuned" / "postprocessing.json"
    tune(config_file=json.dumps(TUNE_STACK), out=str(out), overrides=overrides)
    printed = capsys.readouterr().out
    assert "validation images; presence gate not available" in printed and f"Override written to {out}" in printed
    tuned = json.loads(out.read_text())
    assert set(tuned) == {"threshold", "min_area", "gate_threshold"} and tuned["gate_threshold"] == 0.0
    assert sorted(p.name for p in (tmp_path / "outputs" / "eval").iterdir()) == ["tune.log"]  # no report
    assert not list((tmp_path / "outputs").glob("events.out.tfevents.*"))  # finalize made no TensorBoard writer
    with pytest.raises(UserInputError, match="stack configs/tune.json"):
        tune(config_file=json.dumps(TUNE_STACK[:2]), overrides=overrides)
