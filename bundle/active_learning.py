"""Active learning by ASME consistency: score unlabelled images, propose the least consistent for annotation next.

An image whose flipped views the model segments differently (low ASME consistency, the mean pairwise Dice of the
views' masks, :mod:`nerveseg.bundle.inference.ensemble`) is one the model is unsure of; annotating it first should teach
the model more than a random image. Plain torch and MONAI: the MONAI Label app (``nerveseg.scripts.label_app``)
and the simulation benchmark (``nerveseg bench active-learning``) both call these functions.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from monai.data import MetaTensor
from torch import nn

from nerveseg.bundle import runs
from nerveseg.bundle.inference.inferers import ASMEInferer
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import read_state_dict

__all__ = ["BundleConsistencyScorer", "asme_consistency", "least_consistent"]

SCORE_KEY = "asme_consistency"
"""The name of the score in the MONAI Label datastore and in :attr:`ASMEInferer.last_scores`."""


def asme_consistency(
    network: nn.Module,
    images: torch.Tensor,
    views: Sequence[str] = ("identity", "lr", "ud", "both"),
    threshold: float = 0.5,
    batch_size: int = 8,
) -> torch.Tensor:
    """The ASME consistency of each image: mean off-diagonal Dice of the masks of its flipped views.

    1 means every view gives the same mask (also when all are empty); values near 0 mean the views disagree.
    The network runs in eval mode without gradients; its train/eval mode is restored afterwards.

    Args:
        network: returns ``[B, 1, H, W]`` logits for ``[B, C, H, W]`` images.
        images: ``[N, C, H, W]`` preprocessed images on the network's device.
        views: flipped views of :data:`nerveseg.bundle.inference.inferers.FLIP_VIEWS`, at least two to compare.
        threshold: probability above which a pixel is foreground, in ``(0, 1)``.
        batch_size: images per ensemble call (each makes ``len(views)`` forwards), at least 1.

    Returns:
        ``[N]`` float32 scores in ``[0, 1]`` on the CPU.

    Raises:
        ValueError: fewer than two views, a bad ``batch_size`` or ``images`` not ``[N, C, H, W]``.
    """
    if isinstance(views, str) or len(views) < 2:
        raise ValueError(f"views must name at least two flipped views to compare, got {views!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}.")
    inferer = ASMEInferer(views=views, threshold=threshold)
    was_training = network.training
    network.eval()
    scores = []
    try:
        with torch.no_grad():
            for batch in torch.split(images, batch_size):
                inferer(batch.as_tensor() if isinstance(batch, MetaTensor) else batch, network)
                scores.append(inferer.last_scores[SCORE_KEY])
    finally:
        network.train(was_training)
    return torch.cat(scores) if scores else torch.zeros(0)


def least_consistent(
    scores: Mapping[str, float],
    count: int = 1,
    exclude: Iterable[str] = (),
    seed: int | None = None,
) -> list[str]:
    """The ``count`` ids of ``scores`` with the lowest consistency, lowest first, ``exclude`` left out.

    Equal scores (e.g. many images whose views all agree on an empty mask, 1.0) are ordered by id, or at random
    with a ``seed``, so a run is reproducible either way.

    Args:
        scores: image id to ASME consistency.
        count: how many ids to return (fewer when fewer remain), at least 1.
        exclude: ids not to propose (already labelled, or being annotated).
        seed: shuffle equal scores with this seed instead of ordering them by id.

    Raises:
        ValueError: ``count`` < 1 or a score that is not a finite number.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    excluded = set(exclude)
    candidates = sorted(key for key in scores if key not in excluded)
    for key in candidates:
        value = scores[key]
        if not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"The score of {key!r} is {value!r}, not a finite number; score the image again.")
    if seed is not None:
        random.Random(seed).shuffle(candidates)
    return sorted(candidates, key=lambda key: float(scores[key]))[:count]  # a stable sort keeps the tie order


class BundleConsistencyScorer:
    """Scores image files by ASME consistency with the bundle's own preprocessing, network and checkpoint.

    The configs are parsed once (``preprocessing`` and ``network_def`` of inference.json, so any network override
    stacked there is honoured); the checkpoint is read at every call, so a scorer kept by a server always uses the
    latest trained ``model.pt``.

    Args:
        bundle_root: the bundle folder holding ``configs/``.
        config_files: config stack relative to ``bundle_root`` (or absolute).
        overrides: values set on the parsed configs, e.g. ``{"image_size": [64, 96]}``.
        checkpoint: the weights; ``{ckpt_dir}/model.pt`` of the configs by default.
        views: flipped views to compare.
        threshold: probability threshold of the views' masks; the configs' ``threshold`` by default.
        batch_size: images per ensemble call.
        device: where the network runs; the configs' ``device`` by default.
    """

    def __init__(
        self,
        bundle_root: str | os.PathLike = ".",
        config_files: Sequence[str] = ("configs/inference.json",),
        overrides: Mapping[str, object] | None = None,
        checkpoint: str | os.PathLike | None = None,
        views: Sequence[str] = ("identity", "lr", "ud", "both"),
        threshold: float | None = None,
        batch_size: int = 8,
        device: str | torch.device | None = None,
    ) -> None:
        root = Path(bundle_root)
        parser = runs.read_config(
            runs.config_files(root, *config_files), {"bundle_root": str(root), **(overrides or {})}
        )
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.device = torch.device(device) if device is not None else parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network_def").to(self.device)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else Path(parser.get_parsed_content("ckpt_dir"))
        if checkpoint is None:
            self.checkpoint = self.checkpoint / "model.pt"
        self.views = tuple(views)
        if threshold is None:
            threshold = parser.get_parsed_content("threshold") if "threshold" in parser else 0.5
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)

    def load_weights(self) -> None:
        """Read the checkpoint into the network.

        Raises:
            UserInputError: the checkpoint is missing (train first) or does not fit the network.
        """
        if not self.checkpoint.is_file():
            raise UserInputError(
                f"No checkpoint at {self.checkpoint}: train the model first (MONAI Label: /train/{{model}}; "
                "bundle: monai.bundle run training), then score."
            )
        state = read_state_dict(self.checkpoint, "Checkpoint")
        try:
            self.network.load_state_dict(state)
        except RuntimeError as error:
            raise UserInputError(f"{self.checkpoint} does not fit the configured network: {error}") from error

    def __call__(self, images: Mapping[str, str | os.PathLike]) -> dict[str, float]:
        """Image id to ASME consistency for every ``id: path`` of ``images``, with the latest checkpoint.

        Raises:
            UserInputError: no checkpoint, or an image that cannot be read (the message names its file).
        """
        self.load_weights()
        scores: dict[str, float] = {}
        items = list(images.items())
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            tensors = []
            for key, path in chunk:
                try:
                    tensors.append(self.preprocessing({"image": str(path)})["image"])
                except Exception as error:  # MONAI wraps reader errors in RuntimeError chains
                    raise UserInputError(f"Cannot score image {key!r} ({path}): {error}") from error
            batch = torch.stack([torch.as_tensor(t) for t in tensors]).to(self.device)
            values = asme_consistency(self.network, batch, self.views, self.threshold, self.batch_size)
            scores.update({key: float(v) for (key, _), v in zip(chunk, values, strict=True)})
        return scores
