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


def _epoch_of(checkpoint) -> int:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError):
        return 0
    return state["trainer"]["iteration"] // state["trainer"]["epoch_length"]


def test_killed_training_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    """kill -9 after a few epochs, then --resume: the final weights equal those of an uninterrupted run."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(_command(tiny_dataset, uninterrupted, num_epochs=4), cwd=tmp_path, env=env, check=True,
                   capture_output=True)  # fmt: skip

    process = subprocess.Popen(
        _command(tiny_dataset, interrupted, num_epochs=4), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _epoch_of(interrupted / "models" / "last.pt") < 2 and process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training did not reach epoch 2 in 300 s")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _epoch_of(interrupted / "models" / "last.pt")
    assert 2 <= killed_at < 4, f"killed at epoch {killed_at}; the test needs an unfinished run"

    resumed = subprocess.run(_command(tiny_dataset, interrupted, "--resume", "true", num_epochs=4), cwd=tmp_path,
                             env=env, capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        f"Resumed from {interrupted / 'models' / 'last.pt'} after epoch {killed_at}"
        in (interrupted / "outputs" / "train.log").read_text()
    )
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
    """Each stage is its own ``monai.bundle`` process, started from the previous stage's weights."""
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
