"""configs/multi_gpu_train.json on two CPU processes (gloo), one tiny epoch, as torchrun starts it on GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CONFIGS, tiny_run_overrides

pytestmark = pytest.mark.slow

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_two_processes_train_and_only_rank_zero_writes(tiny_dataset, tmp_path):
    configs = json.dumps([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    overrides = ["--dataset_dir", str(tiny_dataset), *tiny_run_overrides(tmp_path, num_epochs=2, batch_size=2)]
    command = [str(TORCHRUN), "--nproc_per_node=2", "--master_port=29517", "-m", "monai.bundle", "run", "training",
               "--config_file", configs, *overrides]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    log = (tmp_path / "outputs" / "train.log").read_text()
    assert log.count("Epoch[2] Metrics -- val_mean_dice") == 1  # one process logs
    assert len(list((tmp_path / "outputs").glob("events.out.tfevents.*"))) == 1
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in state)  # saved without the DDP wrapper
