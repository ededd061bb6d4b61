"""Progressive resizing (the pneumothorax seed's 256 -> 512 -> 768): one training run per size, each starting from
the previous run's best weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nerveseg.bundle import runs


def stage_overrides(
    sizes: Sequence[Sequence[int]],
    epochs: Sequence[int],
    ckpt_dir: str,
    output_dir: str,
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ``monai.bundle run training`` overrides of each stage; stage ``i`` trains at ``sizes[i]``.

    Stage ``i`` writes ``{ckpt_dir}/stage{i}_{H}x{W}/`` and ``{output_dir}/stage{i}_{H}x{W}/`` and, after the first,
    starts from the previous stage's ``model.pt`` (``init_weights``); ``overrides`` apply to every stage.
    """
    sizes = [tuple(int(v) for v in size) for size in sizes]
    if not sizes or any(len(size) != 2 for size in sizes):
        raise ValueError(f"sizes must be a non-empty list of [height, width] pairs, got {sizes}.")
    if len(epochs) != len(sizes) or min(epochs) < 1:
        raise ValueError(f"epochs needs one positive number per size ({len(sizes)}), got {list(epochs)}.")
    stages, previous = [], None
    for stage, ((height, width), num_epochs) in enumerate(zip(sizes, epochs, strict=True)):
        name = f"stage{stage}_{height}x{width}"
        settings = {
            "image_size": [height, width],
            "num_epochs": int(num_epochs),
            "ckpt_dir": str(Path(ckpt_dir) / name),
            "output_dir": str(Path(output_dir) / name),
            **({"init_weights": str(previous)} if previous else {}),
        }
        stages.append({**settings, **dict(overrides or {})})
        previous = Path(ckpt_dir) / name / "model.pt"
    return stages


def progressive(
    sizes: Sequence[Sequence[int]] = ((256, 320), (512, 640), (768, 960)),
    epochs: Sequence[int] = (30, 20, 10),
    config_file: Sequence[str] = ("configs/train.json",),
    ckpt_dir: str = "models/progressive",
    output_dir: str = "outputs/progressive",
    overrides: str = "",
) -> None:
    """Train at increasing image sizes, each stage starting from the previous stage's best checkpoint.

    Each stage is ``monai.bundle run training`` in this process (:mod:`nerveseg.bundle.runs`). Evaluate or infer
    with the last stage: ``--ckpt_dir {ckpt_dir}/stage{N}_{H}x{W} --image_size "[H, W]"``.

    Args:
        sizes: ``[height, width]`` per stage, each divisible by 32 (the pneumothorax seed: 256, 512, 768).
        epochs: epochs per stage.
        config_file: the configs every stage stacks.
        ckpt_dir: parent folder of the stages' checkpoints.
        output_dir: parent folder of the stages' logs.
        overrides: more ``monai.bundle`` arguments for every stage, as one string:
            ``--overrides="--dataset_dir /data/nerve --batch_size 4"``.
    """
    stages = stage_overrides(sizes, epochs, ckpt_dir, output_dir, runs.parse_overrides(overrides))
    for stage, settings in enumerate(stages):
        print(f"stage {stage + 1}/{len(stages)}: {settings}", flush=True)
        try:
            runs.run_workflow(runs.parse_config_list(config_file), "training", settings, console=True)
        except Exception as error:
            raise RuntimeError(f"stage {stage + 1} failed, later stages were not run: {error}") from error
    print(f"Done; the final model is {Path(stages[-1]['ckpt_dir']) / 'model.pt'}")
