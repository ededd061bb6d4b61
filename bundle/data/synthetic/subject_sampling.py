"""What is drawn for a subject before its anatomy: the random-stream keys, low-discrepancy quantiles of its positive
rate, duplicate and nerve size, the runs of frames that hold the nerve, and the conflicting duplicate pair."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = [
    "DUPLICATE_FRACTION",
    "RATE_BETA",
    "STREAM_SEQUENCE",
    "STREAM_TEST",
    "STREAM_TEST_ORDER",
    "STREAM_TRAIN",
    "draw_presence",
    "presence_runs",
    "run_edges",
    "sequence_quantiles",
]

RATE_BETA: tuple[float, float] = (0.7, 1.0)
"""Per-subject positive rate ~ Beta(a, b), mean 0.41, drawn at antithetic golden-ratio quantiles."""
DUPLICATE_FRACTION: float = 0.3
"""Share of training subjects holding one conflicting duplicate pair."""

# Random-stream keys: [seed, stream, index] with index >= 1 (SeedSequence ignores trailing zeros).
STREAM_TRAIN, STREAM_TEST, STREAM_SEQUENCE, STREAM_TEST_ORDER = 0, 1, 2, 3

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_SILVER = math.sqrt(2.0) - 1.0
_BRONZE = math.sqrt(3.0) - 1.0


def sequence_quantiles(seed: int, stream: int, index: int) -> tuple[float, float, float]:
    """Low-discrepancy quantiles ``(u_rate, u_duplicate, u_size)`` of subject ``index`` (>= 1).

    The rate quantile follows an antithetic golden-ratio sequence (subjects ``2j - 1`` and ``2j`` get ``u`` and
    ``1 - u``), so any block of subjects spans the Beta distribution evenly and the overall positive rate stays close
    to its mean however many subjects are drawn; the duplicate and nerve-size quantiles follow Weyl sequences of other
    irrational steps, so duplicates and nerve sizes are spread evenly too.
    """
    offset_rate, offset_dup, offset_size = np.random.default_rng([seed, STREAM_SEQUENCE, stream + 1]).random(3)
    u_rate = (offset_rate + ((index + 1) // 2) * _GOLDEN) % 1.0
    if index % 2 == 0:
        u_rate = 1.0 - u_rate
    return float(u_rate), float((offset_dup + index * _SILVER) % 1.0), float((offset_size + index * _BRONZE) % 1.0)


def presence_runs(rng: np.random.Generator, num_frames: int, rate: float) -> np.ndarray:
    """Nerve presence per frame, realised as 1-3 contiguous runs holding ``round(rate * num_frames)`` frames.

    At least one frame is positive and one negative.
    """
    positives = int(np.clip(round(rate * num_frames), 1, num_frames - 1))
    negatives = num_frames - positives
    num_runs = int(min(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]), max(1, min(positives // 2, negatives + 1))))
    cuts = np.sort(rng.choice(np.arange(1, positives), num_runs - 1, replace=False)) if num_runs > 1 else []
    run_lengths = np.diff([0, *cuts, positives])
    gaps = rng.multinomial(negatives - (num_runs - 1), rng.dirichlet(np.ones(num_runs + 1)))
    gaps[1:-1] += 1
    presence = np.zeros(num_frames, dtype=bool)
    start = 0
    for gap, length in zip(gaps[:-1], run_lengths, strict=True):
        start += int(gap)
        presence[start : start + int(length)] = True
        start += int(length)
    return presence


def draw_presence(
    rng: np.random.Generator, num_frames: int, u_rate: float, u_duplicate: float, with_duplicate: bool
) -> tuple[float, np.ndarray, tuple[int, int] | None]:
    """A subject's positive rate, its per-frame nerve presence and its conflicting duplicate pair.

    Args:
        rng: the subject's random stream.
        num_frames: number of frames, >= 2.
        u_rate: quantile of the positive rate in the Beta distribution.
        u_duplicate: the subject holds a duplicate pair when this is below :data:`DUPLICATE_FRACTION`.
        with_duplicate: allow a duplicate pair at all (training subjects only).

    Returns:
        ``(rate, presence, duplicate)``: ``duplicate`` is ``(positive_frame, negative_frame)``, two neighbouring
        0-based frames across the edge of a nerve run, or ``None``.
    """
    rate = float(special.betaincinv(*RATE_BETA, u_rate))
    presence = presence_runs(rng, num_frames, rate)
    duplicate = None
    if with_duplicate and u_duplicate < DUPLICATE_FRACTION:
        boundaries = [(t, t + 1) if presence[t] else (t + 1, t) for t in range(num_frames - 1)]
        boundaries = [b for b in boundaries if presence[b[0]] != presence[b[1]]]
        duplicate = boundaries[int(rng.integers(len(boundaries)))]
    return rate, presence, duplicate


def run_edges(presence: np.ndarray) -> np.ndarray:
    """Positive frames next to a negative one: where a run of nerve presence starts or ends (the nerve fades)."""
    edge = np.zeros(len(presence), dtype=bool)
    edge[1:] |= presence[1:] & ~presence[:-1]
    edge[:-1] |= presence[:-1] & ~presence[1:]
    return edge
