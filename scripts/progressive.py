"""Progressive resizing (the pneumothorax seed's 256 -> 512 -> 768): one training run per size, each starting from
the previous run's best weights."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def stage_commands(
    sizes: Sequence[Sequence[int]],
    epochs: Sequence[int],
    config_file: Sequence[str],
    ckpt_dir: str,
    output_dir: str,
    overrides: Sequence[str] = (),
) -> list[list[str]]:
    """The ``monai.bundle run training`` command of each stage; stage ``i`` trains at ``sizes[i]``.

    Stage ``i`` writes ``{ckpt_dir}/stage{i}_{H}x{W}/`` and ``{output_dir}/stage{i}_{H}x{W}/`` and, after the first,
    starts from the previous stage's ``model.pt`` (``init_weights``); everything else comes from ``config_file``.
    """
    sizes = [tuple(int(v) for v in size) for size in sizes]
    if not sizes or any(len(size) != 2 for size in sizes):
        raise ValueError(f"sizes must be a non-empty list of [height, width] pairs, got {sizes}.")
    if len(epochs) != len(sizes) or min(epochs) < 1:
        raise ValueError(f"epochs needs one positive number per size ({len(sizes)}), got {list(epochs)}.")
    commands, previous = [], None
    for stage, ((height, width), num_epochs) in enumerate(zip(sizes, epochs, strict=True)):
        name = f"stage{stage}_{height}x{width}"
        command = [
            sys.executable, "-m", "monai.bundle", "run", "training",
            "--config_file", json.dumps(list(config_file)),
            "--image_size", json.dumps([height, width]),
            "--num_epochs", str(num_epochs),
            "--ckpt_dir", str(Path(ckpt_dir) / name),
            "--output_dir", str(Path(output_dir) / name),
            *(["--init_weights", str(previous)] if previous else []),
            *overrides,
        ]  # fmt: skip
        commands.append(command)
        previous = Path(ckpt_dir) / name / "model.pt"
    return commands


def progressive(
    sizes: Sequence[Sequence[int]] = ((256, 320), (512, 640), (768, 960)),
    epochs: Sequence[int] = (30, 20, 10),
    config_file: Sequence[str] = ("configs/train.json",),
    ckpt_dir: str = "models/progressive",
    output_dir: str = "outputs/progressive",
    overrides: str = "",
) -> None:
    """Train at increasing image sizes, each stage starting from the previous stage's best checkpoint.

    Evaluate or infer with the last stage: ``--ckpt_dir {ckpt_dir}/stage{N}_{H}x{W} --image_size "[H, W]"``.

    Args:
        sizes: ``[height, width]`` per stage, each divisible by 32 (the pneumothorax seed: 256, 512, 768).
        epochs: epochs per stage.
        config_file: the configs every stage stacks.
        ckpt_dir: parent folder of the stages' checkpoints.
        output_dir: parent folder of the stages' logs.
        overrides: more ``monai.bundle`` arguments for every stage, as one string:
            ``--overrides="--dataset_dir /data/nerve --batch_size 4"``.
    """
    commands = stage_commands(sizes, epochs, config_file, ckpt_dir, output_dir, shlex.split(overrides))
    for stage, command in enumerate(commands):
        print(f"stage {stage + 1}/{len(commands)}: {' '.join(command[3:])}", flush=True)
        result = subprocess.run(command)
        if result.returncode != 0:
            raise SystemExit(f"stage {stage + 1} failed (exit code {result.returncode}); later stages were not run.")
    print(f"Done; the final model is {Path(commands[-1][commands[-1].index('--ckpt_dir') + 1]) / 'model.pt'}")
