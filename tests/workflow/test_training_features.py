"""Each training feature through the real configs on tiny data: its override file, kill-and-resume, bad settings.

The features run in this process through ``ConfigWorkflow``; kill-and-resume needs processes to kill.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import CONFIGS, run_workflow, tiny_overrides, tiny_run_overrides
from nerveseg.scripts.progressive import progressive

pytestmark = pytest.mark.slow

TRAIN = CONFIGS / "train.json"
FEATURES = sorted((CONFIGS / "training").glob("*.json")) + sorted((CONFIGS / "losses").glob("*.json"))


def _configs(*paths) -> list[str]:
    return ["--config_file", json.dumps([str(p) for p in paths])]


def _command(dataset, work, *extra: str, num_epochs: int = 3) -> list[str]:
    overrides = ["--dataset_dir", str(dataset), *tiny_run_overrides(work, num_epochs=num_epochs)]
    return [sys.executable, "-m", "monai.bundle", "run", "training", *_configs(TRAIN), *overrides, *extra]


@pytest.mark.parametrize("feature", FEATURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_feature_trains(feature, tiny_dataset, tmp_path):
    run_workflow("training", [TRAIN, feature], dataset_dir=str(tiny_dataset), **tiny_overrides(tmp_path, num_epochs=2))
    assert (tmp_path / "models" / "model.pt").is_file() and (tmp_path / "models" / "last.pt").is_file()
    log = (tmp_path / "outputs" / "train.log").read_text()
    assert "val_mean_dice" in log
    if feature.stem == "swa":
        assert (tmp_path / "models" / "model_swa.pt").is_file()
        assert "SWA" in log


def test_tensorboard_gets_loss_lr_dice_and_the_panel(tiny_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_workflow("training", [TRAIN], dataset_dir=str(tiny_dataset), **tiny_overrides(tmp_path, num_epochs=2))
    tags = {"scalars": set(), "images": set()}
    for events in (tmp_path / "outputs").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    assert {"train_loss", "lr", "val_mean_dice"} <= tags["scalars"]
    assert "validation_cases" in tags["images"]


def _iteration_of(checkpoint) -> int:
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"]["iteration"]
    except (OSError, RuntimeError, EOFError, KeyError):
        return 0


def test_killed_training_resumes_inside_an_epoch_to_the_same_weights(tiny_dataset, tmp_path):
    """A checkpoint every 2 iterations (5 per epoch); kill -9 once one inside epoch 2 or 3 is written, then
    --resume: the final weights equal those of an uninterrupted run."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    every = ("--checkpoint_interval", "2")
    subprocess.run(_command(tiny_dataset, uninterrupted, *every, num_epochs=4), cwd=tmp_path, env=env, check=True,
                   capture_output=True)  # fmt: skip

    process = subprocess.Popen(
        _command(tiny_dataset, interrupted, *every, num_epochs=4), cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while (
        not (6 <= _iteration_of(interrupted / "models" / "last.pt") < 15)
        or _iteration_of(interrupted / "models" / "last.pt") % 5 == 0
    ):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("training ended before a checkpoint inside epoch 2 or 3 was written")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _iteration_of(interrupted / "models" / "last.pt")
    assert killed_at < 20, "the run finished before it was killed"

    resumed = subprocess.run(_command(tiny_dataset, interrupted, *every, "--resume", "true", num_epochs=4),
                             cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (interrupted / "outputs" / "train.log").read_text()
    if killed_at % 5:
        assert f"Resumed from {interrupted / 'models' / 'last.pt'} at iteration {killed_at % 5}/5 of epoch" in log
    for name in ("last.pt", "model.pt"):
        expected = torch.load(uninterrupted / "models" / name, weights_only=False)
        actual = torch.load(interrupted / "models" / name, weights_only=False)
        expected, actual = expected.get("network", expected), actual.get("network", actual)
        for key, tensor in expected.items():
            assert torch.equal(actual[key], tensor), f"{name}: {key} differs after resuming"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"swa_start": 5}, r"swa_start \(5\) must be less than num_epochs \(3\)"),
        ({"accumulation_steps": 0}, "accumulation_steps"),
        ({"resume": True}, "resume is true but .*last.pt does not exist"),
    ],
    ids=["swa_start", "accumulation_steps", "resume"],
)
def test_bad_configuration_fails_at_start_up_naming_the_key(override, message, tiny_dataset, tmp_path):
    overrides = {"dataset_dir": str(tiny_dataset), **tiny_overrides(tmp_path, num_epochs=3), **override}
    with pytest.raises(Exception) as raised:
        run_workflow("training", [TRAIN], **overrides)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert re.search(message, "\n".join(chain)), chain
    assert not (tmp_path / "models" / "model.pt").exists()


def test_progressive_resizing_runs_each_stage(tiny_dataset, tmp_path, capsys):
    """Each stage is a training run in this process, started from the previous stage's weights."""
    overrides = f"--dataset_dir {tiny_dataset} --bundle_root {CONFIGS.parent} --num_workers 0 --batch_size 4"
    progressive(
        sizes=[[64, 96], [96, 128]],
        epochs=[1, 1],
        config_file=[str(TRAIN)],
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "outputs"),
        overrides=overrides,
    )
    assert (tmp_path / "models" / "stage0_64x96" / "model.pt").is_file()
    assert (tmp_path / "models" / "stage1_96x128" / "model.pt").is_file()
    assert "stage1_96x128/model.pt" in capsys.readouterr().out


def test_lossy_masks_train_with_a_threshold(tmp_path):
    """JPEG masks in a raw challenge-layout folder: refused as non-binary, accepted with ``mask_threshold``."""
    import numpy as np
    from PIL import Image

    from nerveseg.utils.errors import find_user_error

    rng = np.random.default_rng(0)
    (tmp_path / "data" / "train").mkdir(parents=True)
    for subject in (1, 2, 3):
        for frame in (1, 2):
            Image.fromarray(rng.integers(0, 255, (64, 96), dtype=np.uint8)).save(
                tmp_path / "data" / "train" / f"{subject}_{frame}.jpg"
            )
            mask = np.zeros((64, 96), np.uint8)
            mask[13 + frame : 40, 21 : 50 + subject] = 255
            Image.fromarray(mask).save(tmp_path / "data" / "train" / f"{subject}_{frame}_mask.jpg", quality=70)
    overrides = {"dataset_dir": str(tmp_path / "data"), **tiny_overrides(tmp_path, num_epochs=1)}
    with pytest.raises(RuntimeError) as raised:
        run_workflow("training", [TRAIN], **overrides)
    assert "a lossy JPEG mask: threshold it" in str(find_user_error(raised.value))
    run_workflow("training", [TRAIN], **overrides, mask_threshold=128)
    assert (tmp_path / "models" / "model.pt").is_file()
