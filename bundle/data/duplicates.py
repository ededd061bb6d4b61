"""Find exact and near-duplicate frames within each subject, and drop the ones whose masks conflict.

The nerve challenge holds frames of one scan that are identical, or nearly so, yet annotated differently (one with a
nerve mask, one empty). A network cannot fit both labels. The nerve seed removed only the exact pairs (about 9);
other public work found 52-107 near pairs with conflicting masks.

Frames are compared only within a subject. Exact duplicates have the same decoded pixels (a hash of the array's
bytes, dtype and shape). Near duplicates have a thumbnail distance at most ``near_threshold``: each image is read once,
converted to grayscale, area-averaged to a small thumbnail, normalised to zero mean and unit standard deviation (so a
gain or brightness change does not count), and two thumbnails are compared by their mean absolute difference, in
standard deviations. Images of different sizes are never near duplicates.

:data:`NEAR_THRESHOLD` (0.01) was measured on the synthetic data (``generate_dataset``, seed 0, 32 x 40 thumbnails),
whose consecutive frames differ by 3-5 gray levels per pixel (mostly speckle, which the thumbnail averages away):

=====================================  =========================  =========================
thumbnail distance                     16 x 30 frames, 420 x 580  4 x 10 frames, 64 x 96
=====================================  =========================  =========================
consecutive frames: min / p5 / median  0.0027 / 0.0068 / 0.027   0.0060 / 0.0073 / 0.032
consecutive frames flagged at 0.01     10.5%                      11.8%
same-subject pairs flagged at 0.01     1.0%                       2.8%
copy + noise of sigma 1 / 3 gray       0.002 / 0.007              0.010 / 0.031
=====================================  =========================  =========================

So exact copies, lightly noised copies and the closest tenth of consecutive frames are flagged, the ordinary drift
between frames is not. Real scans are less smooth than the synthetic ones: in USGRA-seg (204 real nerve images), two
visibly near-identical frames of one scan are 0.058 apart and the next closest pair (same region, another view) 0.16;
raise the threshold (to 0.1, say) for sparse stills rather than video frames.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nerveseg.bundle.data.io import read_image, read_mask
from nerveseg.utils.errors import UserInputError

__all__ = ["NEAR_THRESHOLD", "POLICIES", "DuplicatePair", "find_duplicates", "drop_duplicates"]

NEAR_THRESHOLD = 0.01
"""Mean absolute difference of normalised thumbnails (in standard deviations) at or below which frames are near."""

POLICIES = ("drop_negative", "drop_both", "keep")


@dataclass(frozen=True)
class DuplicatePair:
    """Two frames of one subject whose images are identical (``"exact"``) or nearly so (``"near"``).

    Attributes:
        first: image path of the member that comes first in the items.
        second: image path of the other member.
        kind: ``"exact"`` (same decoded pixels) or ``"near"`` (thumbnail distance <= the threshold).
        distance: thumbnail distance (0 for exact pairs).
        mask_dice: Dice of the two masks; 1.0 for two empty masks.
        conflicting: one mask empty and the other not, or ``mask_dice`` below the conflict threshold.
        first_area: foreground pixel count of the first member's mask.
        second_area: foreground pixel count of the second member's mask.
    """

    first: str
    second: str
    kind: str
    distance: float
    mask_dice: float
    conflicting: bool
    first_area: int = 0
    second_area: int = 0


def _fingerprint(path: str, thumbnail: tuple[int, int]) -> tuple[str, tuple[int, ...], np.ndarray]:
    """Hash of the decoded pixels, the image size and the normalised ``[h * w]`` thumbnail of one image."""
    pixels = read_image(path)
    digest = hashlib.sha1(f"{pixels.dtype}{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    image = Image.fromarray(pixels.astype(np.float32))
    thumb = np.asarray(image.resize(thumbnail[::-1], Image.Resampling.BOX), dtype=np.float32).ravel()
    return digest, pixels.shape[:2], (thumb - thumb.mean()) / max(float(thumb.std()), 1e-6)


def _pairwise_distance(thumbs: np.ndarray, block: int = 64) -> np.ndarray:
    """``[n, n]`` mean absolute difference between the rows of ``[n, d]`` thumbnails, ``block`` rows at a time."""
    out = np.empty((len(thumbs), len(thumbs)), dtype=np.float32)
    for start in range(0, len(thumbs), block):
        out[start : start + block] = np.abs(thumbs[start : start + block, None, :] - thumbs[None]).mean(axis=-1)
    return out


def find_duplicates(
    items: Sequence[dict],
    near_threshold: float = NEAR_THRESHOLD,
    conflict_dice: float = 0.5,
    thumbnail: tuple[int, int] = (32, 40),
) -> list[DuplicatePair]:
    """Exact and near-duplicate pairs of frames within each subject, with the agreement of their masks.

    Args:
        items: datalist items ``{"image", "label", "subject"}``; a mask's foreground is every non-zero pixel.
        near_threshold: largest thumbnail distance (mean absolute difference in standard deviations) of a near pair.
        conflict_dice: a pair whose masks have a Dice below this (or one mask empty, one not) is conflicting.
        thumbnail: ``(height, width)`` of the area-averaged thumbnails.

    Returns:
        The pairs, ordered by the positions of their members in ``items``.

    Raises:
        ValueError: for an item without ``subject`` or ``label``, an argument out of range, or a file that cannot be
            read (a :class:`~nerveseg.bundle.data.io.DatasetError` naming it).
    """
    if near_threshold < 0 or not 0.0 <= conflict_dice <= 1.0:
        raise ValueError(
            f"need near_threshold >= 0 and conflict_dice in [0, 1], got {near_threshold}, {conflict_dice}."
        )
    if len(thumbnail) != 2 or min(thumbnail) < 1:
        raise ValueError(f"thumbnail must be (height, width) of positive integers, got {thumbnail!r}.")
    for item in items:
        if "subject" not in item or "label" not in item:
            raise ValueError(f"item {item} needs 'subject' and 'label' keys to be checked for duplicates.")
    prints = [_fingerprint(str(item["image"]), tuple(thumbnail)) for item in items]
    digests = np.unique([p[0] for p in prints], return_inverse=True)[1]
    sizes = np.unique([str(p[1]) for p in prints], return_inverse=True)[1]
    subjects: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        subjects.setdefault(str(item["subject"]), []).append(i)
    masks: dict[int, np.ndarray] = {}
    pairs = []
    for members in map(np.array, subjects.values()):
        distance = _pairwise_distance(np.stack([prints[i][2] for i in members]))
        exact = digests[members][:, None] == digests[members][None, :]
        near = (sizes[members][:, None] == sizes[members][None, :]) & (distance <= near_threshold)
        for a, b in zip(*np.nonzero(np.triu(exact | near, k=1)), strict=True):
            i, j = int(members[a]), int(members[b])
            for k in (i, j):
                if k not in masks:
                    masks[k] = read_mask(items[k]["label"], instances=True)
            area_i, area_j = int(masks[i].sum()), int(masks[j].sum())
            dice = 1.0 if area_i + area_j == 0 else 2.0 * int((masks[i] & masks[j]).sum()) / (area_i + area_j)
            conflicting = (area_i == 0) != (area_j == 0) or dice < conflict_dice
            kind, dist = ("exact", 0.0) if exact[a, b] else ("near", float(distance[a, b]))
            first, second = str(items[i]["image"]), str(items[j]["image"])
            pairs.append(DuplicatePair(first, second, kind, dist, dice, conflicting, area_i, area_j))
    order = {str(item["image"]): n for n, item in enumerate(items)}
    return sorted(pairs, key=lambda p: (order[p.first], order[p.second]))


def drop_duplicates(
    items: Sequence[dict], pairs: Sequence[DuplicatePair], policy: str = "drop_negative"
) -> tuple[list[dict], list[dict]]:
    """Drop members of conflicting duplicate pairs; pairs that agree never cause a drop.

    Args:
        items: datalist items; an item is dropped when its ``image`` is a dropped pair member.
        pairs: from :func:`find_duplicates` (pairs naming images not in ``items`` drop nothing).
        policy: ``"drop_negative"`` (the nerve seed's: drop the member with the empty mask; keep both when both
            masks are non-empty), ``"drop_both"`` (drop both members), or ``"keep"`` (drop nothing).

    Returns:
        ``(kept, dropped)`` items, each in their original order.

    Raises:
        ValueError: for an unknown policy.
    """
    if policy not in POLICIES:
        raise UserInputError(f"policy must be one of {POLICIES}, got {policy!r}.")
    drop: set[str] = set()
    for pair in pairs:
        if not pair.conflicting or policy == "keep":
            continue
        if policy == "drop_both":
            drop.update((pair.first, pair.second))
        elif (pair.first_area == 0) != (pair.second_area == 0):
            drop.add(pair.first if pair.first_area == 0 else pair.second)
    kept = [item for item in items if str(item["image"]) not in drop]
    return kept, [item for item in items if str(item["image"]) in drop]
