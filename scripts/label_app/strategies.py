"""MONAI Label scoring method and strategy for ASME consistency (the maths: :mod:`nerveseg.bundle.active_learning`).

:class:`ASMEConsistencyScoring` stores each unlabelled image's consistency under the current checkpoint in the
datastore's image info; :class:`LeastConsistent` serves the least consistent unlabelled image next.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from nerveseg.bundle.active_learning import SCORE_KEY, BundleConsistencyScorer, least_consistent
from nerveseg.bundle.data.datalist import natural_key

__all__ = ["ASMEConsistencyScoring", "LeastConsistent"]

logger = logging.getLogger(__name__)

STAMP_KEY = f"{SCORE_KEY}_checkpoint_mtime"
"""Image-info key of the checkpoint time a score was computed with; an image is scored again after training."""


class ASMEConsistencyScoring(ScoringMethod):
    """Scores every unlabelled image by the ASME consistency of four flipped views under the bundle's checkpoint.

    Runs after each training, label save and sample request when MONAI Label's automatic scoring is on (the
    default), or on ``POST /scoring/asme_consistency``. Images already scored with the current ``models/model.pt``
    are skipped, so a call after a label save only scores what is new. Without a checkpoint nothing is scored.

    Args:
        bundle_path: the bundle folder in the app (``model/{name}``).
        batch_size: images per ensemble call.
        device: where the network runs; the bundle's ``device`` (CUDA when available) by default.
    """

    def __init__(self, bundle_path: str | os.PathLike, batch_size: int = 8, device: str | None = None) -> None:
        super().__init__("ASME consistency (mean pairwise Dice of four flipped views) of each unlabelled image")
        self.bundle_path = Path(bundle_path)
        self.batch_size = batch_size
        self.device = device
        self._scorer: BundleConsistencyScorer | None = None

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Score the unlabelled images not yet scored with the current checkpoint; return counts and the range."""
        if self._scorer is None:
            self._scorer = BundleConsistencyScorer(self.bundle_path, batch_size=self.batch_size, device=self.device)
        checkpoint = self._scorer.checkpoint
        if not checkpoint.is_file():
            logger.info(f"ASME consistency: no checkpoint at {checkpoint} yet; train first, nothing scored")
            return {"scored": 0, "reason": f"no checkpoint at {checkpoint}"}
        stamp = int(checkpoint.stat().st_mtime)
        todo = {}
        for image_id in datastore.get_unlabeled_images():
            if datastore.get_image_info(image_id).get(STAMP_KEY) != stamp:
                todo[image_id] = datastore.get_image_uri(image_id)
        start, scores, failed = time.time(), {}, {}
        for image_id, path in todo.items():  # one by one: an unreadable image must not stop the others
            try:
                scores.update(self._scorer({image_id: path}))
            except ValueError as error:
                failed[image_id] = str(error)
                logger.warning(f"ASME consistency: {error}")
                continue
            datastore.update_image_info(image_id, {SCORE_KEY: scores[image_id], STAMP_KEY: stamp})
        logger.info(
            f"ASME consistency: scored {len(scores)} images in {time.time() - start:.1f} s, {len(failed)} failed"
        )
        result: dict[str, Any] = {"scored": len(scores), "failed": failed}
        if scores:
            result.update(min=min(scores.values()), max=max(scores.values()))
        return result


class LeastConsistent(Strategy):
    """Serves the unlabelled image whose flipped views the current model segments least consistently.

    Uses the scores :class:`ASMEConsistencyScoring` stored in the datastore. An image this strategy served less
    than ``reserve_seconds`` ago is passed over while others remain, so two annotators asking at the same time get
    different images. Before the first training (no scores) it serves the first unlabelled image in natural order,
    like MONAI Label's ``first`` strategy, and says so in the answer (``asme_consistency`` is ``None``).

    Args:
        reserve_seconds: how long a served image is kept from other annotators.
    """

    def __init__(self, reserve_seconds: int = 600) -> None:
        super().__init__("Least ASME-consistent unlabelled image first (the model's most uncertain)")
        self.reserve_seconds = reserve_seconds

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """The next image ``{"id": ..., "asme_consistency": score or None}``; ``None`` when all are labelled."""
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy, now = request.get("strategy", "asme_consistency"), time.time()
        scores, reserved = {}, set()
        for image_id in images:
            info = datastore.get_image_info(image_id)
            if now - info.get("strategy", {}).get(strategy, {}).get("ts", 0) < self.reserve_seconds:
                reserved.add(image_id)
            if isinstance(info.get(SCORE_KEY), (int, float)):
                scores[image_id] = float(info[SCORE_KEY])
        if not scores:
            free = [i for i in images if i not in reserved] or images
            image_id = sorted(free, key=natural_key)[0]
            logger.info(f"{strategy}: no scores yet (train first); serving the first unlabelled image {image_id}")
            return {"id": image_id, SCORE_KEY: None}
        chosen = least_consistent(scores, exclude=reserved) if set(scores) - reserved else least_consistent(scores)
        logger.info(f"{strategy}: serving {chosen[0]} (consistency {scores[chosen[0]]:.4f} of {len(scores)} scored)")
        return {"id": chosen[0], SCORE_KEY: scores[chosen[0]]}
