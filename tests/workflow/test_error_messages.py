"""A run stopped by the user's input ends with the bundle's own message as its last line: what is wrong, which file
or key, and what to do; the traceback stays in the log (and behind ``NERVESEG_TRACEBACK=1``). The ``nerveseg``
commands and two training runs are real commands (slow: a new process imports MONAI); the other runs go through
``monai.bundle.run`` in this process and end with the error hook the run installed, as a command would."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import monai.bundle
import numpy as np
import pytest
import torch
from monai.networks.nets import FlexibleUNet
from PIL import Image

from conftest import BUNDLE_ROOT, CONFIGS
from nerveseg.bundle.logs import TRACEBACK_SWITCH
from nerveseg.bundle.runs import parse_overrides


def _last_line(command: list[str], cwd: Path, traceback: bool = False) -> str:
    env = {**os.environ, "NERVESEG_TRACEBACK": "1" if traceback else "0"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0, result.stdout[-2000:]
    assert ("Traceback" in result.stderr) == traceback, result.stderr[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]  # nor in the console log (MONAI's StatsHandler)
    if not traceback:
        assert "NERVESEG_TRACEBACK=1 prints it here" in result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


def _locations(tmp_path: Path) -> list[str]:
    return ["--bundle_root", str(BUNDLE_ROOT), "--output_dir", str(tmp_path / "outputs"),
            "--ckpt_dir", str(tmp_path / "models"), "--num_workers", "0"]  # fmt: skip


def _train(tmp_path: Path, *overrides: str, traceback: bool = False) -> str:
    """``python -m monai.bundle run training`` on train.json, a real command."""
    return _last_line(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(CONFIGS / "train.json"),
         *_locations(tmp_path), *overrides],
        cwd=tmp_path,
        traceback=traceback,
    )  # fmt: skip


@pytest.fixture
def run_in_process(tmp_path, monkeypatch, capsys):
    """``monai.bundle.run`` in this process; returns the last line that the hook the run installed prints."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the run installs its hook; the test puts Python's back
    monkeypatch.setenv(TRACEBACK_SWITCH, "0")
    monkeypatch.chdir(tmp_path)

    def run(run_id: str, configs: list[str], *overrides: str) -> str:
        settings = parse_overrides(shlex.join([*_locations(tmp_path), *overrides]))
        with pytest.raises(Exception) as raised:
            monai.bundle.run(run_id, config_file=[str(CONFIGS / name) for name in configs], **settings)
        capsys.readouterr()
        sys.excepthook(raised.type, raised.value, raised.tb)
        printed = capsys.readouterr()
        assert "Traceback" not in printed.err + printed.out, printed.err[-3000:]
        assert "NERVESEG_TRACEBACK=1 prints it here" in printed.err
        return [line for line in printed.err.splitlines() if line.strip()][-1]

    return run


def _class_map_folder(root: Path) -> Path:
    """Two subjects in the challenge layout; ``2_1_mask.tif`` holds classes 0, 1 and 2."""
    (root / "train").mkdir(parents=True)
    for subject in (1, 2):
        for frame in (1, 2):
            Image.fromarray(np.full((16, 24), 100, np.uint8)).save(root / "train" / f"{subject}_{frame}.tif")
            Image.fromarray(np.zeros((16, 24), np.uint8)).save(root / "train" / f"{subject}_{frame}_mask.tif")
    Image.fromarray(np.arange(16 * 24, dtype=np.uint8).reshape(16, 24) % 3).save(root / "train" / "2_1_mask.tif")
    return root


@pytest.mark.slow
def test_training_without_data_says_what_to_pass(tmp_path):
    last = _train(tmp_path, traceback=True)  # the switch prints the traceback above, the message stays last
    assert last.startswith("DatasetError: no data set")
    assert "dataset_dir" in last and "datalist_file" in last
    assert "--config_file \"['configs/train.json','configs/quickstart.json']\"" in last
    assert "DatasetError: no data set" in (tmp_path / "outputs" / "train.log").read_text()


@pytest.mark.slow
def test_training_on_a_bad_mask_names_the_file(tmp_path):
    root = _class_map_folder(tmp_path / "data")
    last = _train(tmp_path, "--dataset_dir", str(root))
    assert last.startswith(f"DatasetError: {root / 'train' / '2_1_mask.tif'}: has values [0, 1, 2]")


def _prepare(tmp_path: Path, root: Path, *options: str) -> str:
    nerveseg = Path(sys.executable).with_name("nerveseg")
    out = tmp_path / "out" / "d.json"
    last = _last_line([str(nerveseg), "prepare", "nerve", "--src", str(root), "--out", str(out), *options], tmp_path)
    assert not out.parent.exists()  # nothing written
    return last


@pytest.mark.slow
def test_command_line_ends_with_the_same_message(tmp_path):
    root = _class_map_folder(tmp_path / "data")
    last = _prepare(tmp_path, root)
    assert last.startswith(f"DatasetError: {root / 'train' / '2_1_mask.tif'}: has values [0, 1, 2]")


@pytest.mark.slow
def test_prepare_on_an_empty_folder_names_it(tmp_path):
    (tmp_path / "empty").mkdir()
    last = _prepare(tmp_path, tmp_path / "empty")
    assert last.startswith(f"DatasetError: {tmp_path / 'empty' / 'train'}: no such folder; `prepare nerve` reads")
    assert last.endswith("for a folder of images beside a folder of masks use `nerveseg prepare folders`.")


@pytest.mark.slow
def test_a_lossy_jpeg_mask_points_to_the_threshold(tmp_path):
    root = tmp_path / "jpeg"
    (root / "train").mkdir(parents=True)
    for subject in (1, 2):
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(root / "train" / f"{subject}_1.jpg")
        mask = np.zeros((32, 32), np.uint8)
        mask[5:21, 7:26] = 255
        Image.fromarray(mask).save(root / "train" / f"{subject}_1_mask.jpg", quality=75)  # lossy: many gray levels
    last = _prepare(tmp_path, root)
    assert last.startswith(f"DatasetError: {root / 'train' / '1_1_mask.jpg'}: has values")
    assert "a lossy JPEG mask: threshold it, `nerveseg prepare --mask_threshold 128`" in last


@pytest.mark.slow
def test_an_unknown_test_subject_is_named(tmp_path):
    root = _class_map_folder(tmp_path / "data")
    last = _prepare(tmp_path, root, "--test_subjects", "[1, 7]")
    assert last.startswith("DatasetError: test_subjects: '7' (1 of 2 names) match no subject of the data")


def test_a_size_the_network_cannot_take_names_the_key_and_valid_sizes(tiny_dataset, tmp_path, run_in_process):
    configs = ["train.json", "networks/flexible_unet.json"]  # the default BasicUNet pads its skips: any size >= 32
    last = run_in_process("training", configs, "--dataset_dir", str(tiny_dataset), "--image_size", "[150, 166]")
    assert last == (
        "UserInputError: image_size is [150, 166]: FlexibleUNet cannot take it (its skip connections do not line "
        "up); the nearest sizes it takes are [128, 160] and [160, 192] (sides that are multiples of 32), e.g. "
        '--image_size "[128, 160]".'
    )
    assert not (tmp_path / "models").exists()  # stopped before anything was trained or written


def test_zero_epochs_names_the_setting(tiny_dataset, run_in_process):
    last = run_in_process("training", ["train.json"], "--dataset_dir", str(tiny_dataset), "--num_epochs", "0")
    assert last == "UserInputError: num_epochs is 0: it must be a whole number >= 1; e.g. --num_epochs 12."


def test_evaluating_without_a_checkpoint_says_train_first(tiny_dataset, tmp_path, run_in_process):
    last = run_in_process("evaluating", ["train.json", "evaluate.json"], "--dataset_dir", str(tiny_dataset))
    assert last.startswith(f"UserInputError: {tmp_path / 'models' / 'model.pt'}: no such checkpoint; train first")


def test_evaluating_at_another_size_than_training_names_both(tiny_dataset, tmp_path, run_in_process):
    from nerveseg.bundle.trained_settings import write_trained_settings

    network = FlexibleUNet(in_channels=1, out_channels=1, spatial_dims=2, backbone="efficientnet-b1")
    (tmp_path / "models").mkdir()
    torch.save(network.state_dict(), tmp_path / "models" / "model.pt")
    write_trained_settings(tmp_path / "models", network, [128, 128])
    last = run_in_process("evaluating", ["train.json", "evaluate.json"], "--dataset_dir", str(tiny_dataset))
    assert last == (
        f"UserInputError: image_size is [448, 576], but {tmp_path / 'models' / 'model.pt'} was trained at [128, 128] "
        f'({tmp_path / "models" / "training_settings.json"}); pass --image_size "[128, 128]" as in training, or set '
        "--ckpt_dir to a model trained at [448, 576]."
    )


def test_resuming_without_a_checkpoint_names_the_file(tiny_dataset, tmp_path, run_in_process):
    last = run_in_process(
        "training", ["train.json"], "--dataset_dir", str(tiny_dataset), "--image_size", "[64, 96]", "--resume", "true"
    )
    assert last == (
        f"UserInputError: resume is true but {tmp_path / 'models' / 'last.pt'} does not exist; start without "
        "--resume, or set ckpt_dir to the run to continue."
    )


def test_tuning_on_the_test_split_is_refused(tiny_dataset, run_in_process):
    configs = ["train.json", "evaluate.json", "tune.json"]
    last = run_in_process("tuning", configs, "--dataset_dir", str(tiny_dataset), "--eval_split", "test")
    assert last.startswith("UserInputError: eval_split is 'test': post-processing is tuned on the validation split")
