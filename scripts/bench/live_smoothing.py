"""``nerveseg bench live-smoothing``: whether averaging probabilities over consecutive frames raises Dice.

The live path can average each frame's probabilities with the earlier frames' (``nerveseg live --smoothing S``).
Here a checkpoint segments its validation subjects' frames in order, one subject's video after another (the
average restarts with each subject), at each smoothing weight, and each frame's challenge Dice at its label's size
is compared with the same frame's without smoothing: the paired mean change, and its 95% interval over subjects
(each subject's frames are nearly alike, so they are not independent samples).
The default data are the Quick start's: the synthetic set's validation subjects as train.json splits them, and
the Quick start's model (``models/model.pt``). USGRA-seg has no consecutive frames.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from nerveseg.bundle.data.datalist import build_datalist, natural_key, subject_of
from nerveseg.bundle.data.synthetic import default_dataset_dir
from nerveseg.bundle.inference.streaming import StreamingSegmenter, frame_and_label
from nerveseg.bundle.metrics import image_scores
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.bench.results import write_results
from nerveseg.scripts.bench.scoring import paired_bootstrap

__all__ = ["live_smoothing"]


def live_smoothing(
    checkpoint: str = "models/model.pt",
    dataset_dir: str | None = None,
    configs: Sequence[str] = ("configs/inference.json", "configs/quickstart.json"),
    smoothings: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 0.9),
    seed: int = 0,
    bundle_root: str = ".",
    out: str = "outputs/bench",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Each smoothing weight's mean Dice on the validation subjects' consecutive frames (``live_smoothing.json``).

    Args:
        checkpoint: the weights (the Quick start's by default).
        dataset_dir: a folder in the nerve challenge layout; by default the Quick start's synthetic data.
        configs: the config stack, inference.json first (the Quick start's ``min_area`` by default).
        smoothings: the weights of the earlier frames; 0 (each frame alone) is the reference.
        seed: train.json's ``seed``, which chose the validation subjects.
        bundle_root: the bundle folder holding ``configs/``.
        out: folder of the json and md files.
        overrides: config ids and values, e.g. ``{"inference_backend": "torch"}``.
    """
    smoothings = [float(s) for s in ([smoothings] if isinstance(smoothings, (int, float)) else smoothings)]
    smoothings = [0.0, *(s for s in smoothings if s != 0.0)]
    folder = Path(dataset_dir) if dataset_dir is not None else default_dataset_dir()
    items = build_datalist(dataset_dir=folder, seed=seed, splits=("validation",))["validation"]
    items = sorted(items, key=lambda item: natural_key(item["image"]))
    videos = [list(frames) for _, frames in groupby(items, key=lambda item: subject_of(item["image"]))]
    pairs = [[frame_and_label(item) for item in video] for video in videos]
    dice: dict[float, list[list[float]]] = {}  # per smoothing, per subject, per frame
    for smoothing in smoothings:
        segmenter = StreamingSegmenter.from_bundle(bundle_root, checkpoint, configs, smoothing, overrides)
        dice[smoothing] = []
        for video in pairs:
            segmenter.reset()
            dice[smoothing].append([float(image_scores(segmenter(frame), label)["dice"]) for frame, label in video])
    rows = []
    for smoothing, subjects in dice.items():
        # a subject's frames are nearly alike: the interval resamples subjects, each its frames' mean change
        changes = [statistics.mean(np.subtract(s, r)) for s, r in zip(subjects, dice[0.0], strict=True)]
        mean, low, high = paired_bootstrap([changes])
        frames = [value for subject in subjects for value in subject]
        rows.append({"smoothing": smoothing, "mean_dice": statistics.mean(frames), "change": [mean, low, high]})
    result = {
        "machine": describe_machine(),
        "checkpoint": str(Path(checkpoint).resolve()),
        "dataset_dir": str(folder),
        "subjects": [subject_of(video[0]["image"]) for video in videos],
        "frames": len(items),
        "rows": rows,
    }
    write_results(Path(out).resolve(), "live_smoothing", result, _markdown(result))
    return result


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# nerveseg bench live-smoothing",
        "",
        f"Measured {result['machine']['summary']}. {result['checkpoint']} on the consecutive frames of validation "
        f"subjects {', '.join(result['subjects'])} of {result['dataset_dir']} ({result['frames']} frames), each "
        "subject's video from its first frame. Change: minus smoothing 0 on the same frames, 95% interval over "
        "subjects (their frames' mean changes).",
        "",
        "| smoothing | mean Dice | change [95%] |",
        "|---:|---:|---:|",
    ]
    for row in result["rows"]:
        mean, low, high = row["change"]
        lines.append(f"| {row['smoothing']:g} | {row['mean_dice']:.4f} | {mean:+.4f} [{low:+.4f}, {high:+.4f}] |")
    return "\n".join(lines) + "\n"
