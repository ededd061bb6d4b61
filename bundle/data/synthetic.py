"""Deterministic synthetic ultrasound-nerve dataset, shaped like the public brachial-plexus challenge.

The bundle trains end to end on it with no real data. The output mimics the challenge's layout and statistics:

* ``train/{subject}_{frame}.tif`` and ``train/{subject}_{frame}_mask.tif`` (subjects ``1..S``, frames ``1..F``) and
  ``test/{id}.tif`` (ids ``1..N``, no masks); 8-bit grayscale (PIL mode ``"L"``) uncompressed TIFF, 580 wide x 420
  high by default; masks are 0/255.
* About 41% of the frames contain a nerve, with a per-subject positive rate spread widely (a Beta distribution), the
  nerve present in contiguous runs of frames; nerve areas 2,900-16,500 px (median about 7,000) at 420 x 580, one
  connected component with a smooth irregular outline.
* Consecutive frames of a subject are near-identical (the whole anatomy drifts slowly, the speckle changes a little).
* About one subject in 3-4 holds a conflicting exact duplicate: a frame at the edge of a nerve run appears twice,
  once with its mask and once with an empty mask.

Images are B-mode-like: two-look compounded speckle (complex Gaussian fields smoothed anisotropically, grains
elongated horizontally, log-compressed), depth attenuation, a bright skin layer, wavy hyperechoic fascia,
striated muscle, an anechoic artery with posterior enhancement, and the nerve, a hyperechoic oval holding several
hypoechoic fascicles (the "honeycomb"), next to the artery. Decoys make the task non-trivial: dark veins, rimmed dark
ovals and bright blobs without fascicles (in some subjects at the nerve's own place in the negative frames), and nerve
contrast that varies per subject and fades at the edges of a run.

Everything is drawn with vectorised numpy/scipy operations; subject ``k`` uses ``numpy.random.default_rng([seed, 0,
k])`` and low-discrepancy sequences indexed by ``k``, so a subject's frames do not depend on how many subjects are
generated.

Example::

    from nerveseg.bundle.data.synthetic import default_dataset_dir, generate_dataset

    root = default_dataset_dir()  # cached 16 x 30 frames at 420 x 580, generated on first use (about 7 s)
    tiny = generate_dataset("/tmp/nerve-tiny", num_subjects=4, frames_per_subject=8, image_shape=(64, 96))
"""

from __future__ import annotations

import json
import math
import operator
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, special

__all__ = ["SYNTHETIC_VERSION", "IMAGE_SHAPE", "generate_dataset", "default_dataset_dir"]

SYNTHETIC_VERSION: int = 1
"""Bumped whenever the generated files change; part of the cache folder name."""

IMAGE_SHAPE: tuple[int, int] = (420, 580)
"""(H, W) of the challenge images."""

_MIN_SIDE = 32
# Nerve mask area in px at 420 x 580 (scaled with the image area): per-subject log-normal size, per-frame clip.
_NERVE_AREA_MEDIAN = 7400.0
_NERVE_AREA_LOG_SD = 0.38
_NERVE_AREA_RANGE = (2900.0, 16500.0)
# Per-subject positive rate ~ Beta(a, b), mean 0.41, drawn at antithetic golden-ratio quantiles.
_RATE_BETA = (0.7, 1.0)
_DUPLICATE_FRACTION = 0.3  # share of subjects holding one conflicting duplicate pair
_TEST_FRAMES_PER_SUBJECT = 10
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_SILVER = math.sqrt(2.0) - 1.0
_BRONZE = math.sqrt(3.0) - 1.0
# Random-stream keys: [seed, stream, index] with index >= 1 (SeedSequence ignores trailing zeros).
_STREAM_TRAIN, _STREAM_TEST, _STREAM_SEQUENCE, _STREAM_TEST_ORDER = 0, 1, 2, 3

_F32 = np.float32


@dataclass(frozen=True)
class _Outline:
    """A star-shaped outline: an ellipse radius times ``1 + sum(amp * cos(order * theta + phase))``.

    Args:
        ax: semi-axis along the rotated x direction, px.
        ay: semi-axis along the rotated y direction, px.
        rot: rotation of the ellipse, radians.
        orders: harmonic orders of the wobble.
        amps: relative amplitudes of the harmonics.
        phases: phases of the harmonics, radians.
    """

    ax: float
    ay: float
    rot: float
    orders: tuple[int, ...] = ()
    amps: tuple[float, ...] = ()
    phases: tuple[float, ...] = ()

    def radius(self, theta: np.ndarray) -> np.ndarray:
        """Radius (px) at polar angles ``theta`` (any shape)."""
        t = theta - self.rot
        r = 1.0 / np.sqrt((np.cos(t) / self.ax) ** 2 + (np.sin(t) / self.ay) ** 2)
        wobble = np.ones_like(r)
        for order, amp, phase in zip(self.orders, self.amps, self.phases, strict=True):
            wobble += amp * np.cos(order * theta + phase)
        return (r * wobble).astype(_F32)

    def area(self) -> float:
        """Enclosed area in px^2."""
        r = self.radius(np.linspace(0.0, 2.0 * math.pi, 720, endpoint=False)).astype(np.float64)
        return float(math.pi * np.mean(r**2))

    def rmax(self) -> float:
        """Largest radius (px), with a small safety factor."""
        return 1.02 * float(self.radius(np.linspace(0.0, 2.0 * math.pi, 720, endpoint=False)).max())

    def scaled(self, factor: float) -> _Outline:
        """The same outline scaled by ``factor`` about its centre."""
        return _Outline(self.ax * factor, self.ay * factor, self.rot, self.orders, self.amps, self.phases)

    def with_area(self, area: float) -> _Outline:
        """The same outline scaled to enclose ``area`` px^2."""
        return self.scaled(math.sqrt(area / self.area()))

    def wobbled(self, orders: Sequence[int], amps: Sequence[float], phases: Sequence[float]) -> _Outline:
        """The outline with extra harmonics added to its wobble."""
        return _Outline(
            self.ax,
            self.ay,
            self.rot,
            self.orders + tuple(orders),
            self.amps + tuple(amps),
            self.phases + tuple(phases),
        )


def _random_outline(
    rng: np.random.Generator, area: float, aspect: tuple[float, float], irregularity: float, tilt: float
) -> _Outline:
    """A random smooth, irregular, roughly elliptical outline enclosing ``area`` px^2 (wider than tall)."""
    q = rng.uniform(*aspect)
    orders = (2, 3, 4, 5)
    amps = rng.uniform(-1.0, 1.0, len(orders)) * irregularity / np.array(orders, dtype=float) ** 0.7
    phases = rng.uniform(0.0, 2.0 * math.pi, len(orders))
    outline = _Outline(math.sqrt(q), 1.0 / math.sqrt(q), rng.uniform(-tilt, tilt), orders, tuple(amps), tuple(phases))
    return outline.with_area(area)


def _local_polar(
    shape: tuple[int, int], cy: float, cx: float, half: float
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Pixel offsets, radius and angle around ``(cy, cx)`` inside the box of half-size ``half``, clipped to ``shape``.

    Returns:
        ``(slices, dy, dx, rho, theta)`` (``dy`` is ``[h, 1]``, ``dx`` is ``[1, w]``, the others ``[h, w]``), or
        ``None`` when the box is outside the array.
    """
    y0, y1 = max(math.floor(cy - half), 0), min(math.ceil(cy + half) + 1, shape[0])
    x0, x1 = max(math.floor(cx - half), 0), min(math.ceil(cx + half) + 1, shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    dy = (np.arange(y0, y1, dtype=_F32) - _F32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=_F32) - _F32(cx))[None, :]
    return (slice(y0, y1), slice(x0, x1)), dy, dx, np.hypot(dy, dx), np.arctan2(dy, dx)


def _blob_alpha(
    shape: tuple[int, int], cy: float, cx: float, outline: _Outline, edge: float
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Soft coverage (``alpha > 0.5`` exactly inside the outline) and signed depth (px) of a blob in its box."""
    local = _local_polar(shape, cy, cx, outline.rmax() + edge + 1.0)
    if local is None:
        return None
    slices, _, _, rho, theta = local
    depth = outline.radius(theta) - rho
    return slices, np.clip(0.5 + depth / edge, 0.0, 1.0), depth


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A smooth zero-mean, unit-variance random field with correlation length about ``scale`` px."""
    coarse = (max(math.ceil(shape[0] / max(scale, 1.0)) + 3, 4), max(math.ceil(shape[1] / max(scale, 1.0)) + 3, 4))
    small = rng.standard_normal(coarse)
    out = ndimage.zoom(small, (shape[0] / coarse[0], shape[1] / coarse[1]), order=3, mode="nearest", grid_mode=True)
    out = out[: shape[0], : shape[1]]
    return ((out - out.mean()) / (out.std() + 1e-12)).astype(_F32)


def _smooth_series(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """A smooth zero-mean random sequence of length ``n`` with unit variance (Gaussian-filtered white noise)."""
    pad = math.ceil(3 * sigma) + 1
    raw = ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma, mode="wrap")[pad : pad + n]
    return raw * math.sqrt(2.0 * math.sqrt(math.pi) * sigma)


def _wavy_curve(rng: np.random.Generator, width: int, base: float, amplitude: float) -> np.ndarray:
    """A wavy horizontal curve ``y(x)`` (px) of length ``width``: a slow sine plus smooth noise plus a slight tilt."""
    x = np.arange(width, dtype=np.float64)
    period = rng.uniform(0.7, 2.0) * width
    sine = np.sin(2.0 * math.pi * x / period + rng.uniform(0, 2 * math.pi))
    noise = ndimage.zoom(rng.standard_normal(8), width / 8, order=3, mode="nearest", grid_mode=True)[:width]
    tilt = rng.uniform(-0.6, 0.6) * (x / width - 0.5)
    return (base + amplitude * (sine + 0.5 * noise + tilt)).astype(_F32)


def _bilinear_crop(canvas: np.ndarray, oy: float, ox: float, h: int, w: int) -> np.ndarray:
    """The ``h x w`` window of ``canvas`` whose top-left corner is at the fractional position ``(oy, ox)``."""
    iy, ix = math.floor(oy), math.floor(ox)
    fy, fx = _F32(oy - iy), _F32(ox - ix)
    top = canvas[iy : iy + h, ix : ix + w] * (1 - fx) + canvas[iy : iy + h, ix + 1 : ix + w + 1] * fx
    bottom = canvas[iy + 1 : iy + h + 1, ix : ix + w] * (1 - fx) + canvas[iy + 1 : iy + h + 1, ix + 1 : ix + w + 1] * fx
    return top * (1 - fy) + bottom * fy


def _sequence_quantiles(seed: int, stream: int, index: int) -> tuple[float, float, float]:
    """Low-discrepancy quantiles ``(u_rate, u_duplicate, u_size)`` of subject ``index`` (>= 1).

    The rate quantile follows an antithetic golden-ratio sequence (subjects ``2j - 1`` and ``2j`` get ``u`` and
    ``1 - u``), so any block of subjects spans the Beta distribution evenly and the overall positive rate stays close
    to its mean however many subjects are drawn; the duplicate and nerve-size quantiles follow Weyl sequences of other
    irrational steps, so duplicates and nerve sizes are spread evenly too.
    """
    offset_rate, offset_dup, offset_size = np.random.default_rng([seed, _STREAM_SEQUENCE, stream + 1]).random(3)
    u_rate = (offset_rate + ((index + 1) // 2) * _GOLDEN) % 1.0
    if index % 2 == 0:
        u_rate = 1.0 - u_rate
    return float(u_rate), float((offset_dup + index * _SILVER) % 1.0), float((offset_size + index * _BRONZE) % 1.0)


def _presence_runs(rng: np.random.Generator, num_frames: int, rate: float) -> np.ndarray:
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


@dataclass
class _Subject:
    """The frames of one simulated subject.

    Args:
        images: ``[H, W]`` uint8 images, one per frame.
        masks: ``[H, W]`` uint8 masks (0/255), one per frame.
        duplicate: ``(positive_frame, negative_frame)`` 0-based indices of the conflicting duplicate, or ``None``.
        rate_target: the per-subject positive rate drawn from the Beta distribution.
    """

    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    duplicate: tuple[int, int] | None = None
    rate_target: float = 0.0


def _place(
    rng: np.random.Generator,
    radius: float,
    y_range: tuple[float, float],
    x_range: tuple[float, float],
    taken: list[tuple[float, float, float]],
    gap: float,
    tries: int = 60,
) -> tuple[float, float] | None:
    """A random centre in the ranges whose disc of ``radius`` keeps ``gap`` px from every disc in ``taken``."""
    if y_range[0] > y_range[1] or x_range[0] > x_range[1]:
        return None
    for _ in range(tries):
        cy, cx = rng.uniform(*y_range), rng.uniform(*x_range)
        if all(math.hypot(cy - ty, cx - tx) > radius + tr + gap for ty, tx, tr in taken):
            return cy, cx
    return None


def _simulate_subject(
    seed: int, stream: int, index: int, num_frames: int, shape: tuple[int, int], with_duplicate: bool = True
) -> _Subject:
    """Simulate ``num_frames`` consecutive frames of one subject.

    Args:
        seed: dataset seed.
        stream: ``_STREAM_TRAIN`` or ``_STREAM_TEST``.
        index: subject index within the stream, >= 1.
        num_frames: number of frames, >= 2.
        shape: ``(H, W)`` of the frames.
        with_duplicate: allow a conflicting duplicate pair (train subjects only).

    Returns:
        The subject's images, masks and duplicate pair.
    """
    h, w = shape
    rng = np.random.default_rng([seed, stream, index])
    sy, sx = h / IMAGE_SHAPE[0], w / IMAGE_SHAPE[1]
    s = math.sqrt(sy * sx)  # length scale relative to 420 x 580
    edge = max(0.7, 1.6 * s)  # soft-edge width, px

    # --- nerve presence, runs and duplicate pair ------------------------------------------------------------------
    u_rate, u_dup, u_size = _sequence_quantiles(seed, stream, index)
    rate = float(special.betaincinv(*_RATE_BETA, u_rate))
    presence = _presence_runs(rng, num_frames, rate)
    duplicate = None
    if with_duplicate and u_dup < _DUPLICATE_FRACTION:
        boundaries = [(t, t + 1) if presence[t] else (t + 1, t) for t in range(num_frames - 1)]
        boundaries = [b for b in boundaries if presence[b[0]] != presence[b[1]]]
        duplicate = boundaries[int(rng.integers(len(boundaries)))]

    # --- probe drift: a smooth trajectory of the whole anatomy, kept inside the canvas margins -------------------
    my, mx = math.ceil(0.06 * h) + 2, math.ceil(0.06 * w) + 2
    hc, wc = h + 2 * my + 1, w + 2 * mx + 1
    speed = rng.uniform(0.15, 1.0) * s  # px per frame
    velocity = _smooth_series(rng, num_frames, 2.0) * speed
    drift_x = np.cumsum(velocity)
    drift_y = np.cumsum(_smooth_series(rng, num_frames, 2.0) * speed * 0.35)
    drift_x -= drift_x.mean()
    drift_y -= drift_y.mean()
    drift_x *= min(1.0, (mx - 1.5) / max(np.abs(drift_x).max(), 1e-9))
    drift_y *= min(1.0, (my - 1.5) / max(np.abs(drift_y).max(), 1e-9))

    # --- layered tissue on the canvas (canvas row = frame row + my at zero drift) -------------------------------
    yy = np.arange(hc, dtype=_F32)[:, None]
    xx = np.arange(wc, dtype=_F32)[None, :]
    level_deep = rng.uniform(0.32, 0.45)
    level_sub = level_deep * rng.uniform(0.6, 0.85)
    level_muscle = level_deep * rng.uniform(0.75, 1.0)
    y_skin = _wavy_curve(rng, wc, my + rng.uniform(0.03, 0.06) * h, 3.0 * sy)
    y_f1 = _wavy_curve(rng, wc, my + rng.uniform(0.12, 0.19) * h, 6.0 * sy)
    y_f2 = _wavy_curve(rng, wc, my + rng.uniform(0.26, 0.36) * h, 8.0 * sy)
    y_f3 = _wavy_curve(rng, wc, my + rng.uniform(0.74, 0.88) * h, 10.0 * sy)

    def below(curve: np.ndarray) -> np.ndarray:
        return special.expit((yy - curve[None, :]) / _F32(max(1.0, 2.0 * s)))

    texture = _smooth_field(rng, (hc, wc), 40.0 * s)
    tissue = level_deep * (1.0 + 0.22 * texture + 0.1 * _smooth_field(rng, (hc, wc), 12.0 * s))

    # striation: short, horizontally elongated hyperechoic streaks (perimysium) over mid-gray muscle
    streak_sigma = (max(0.5, rng.uniform(0.9, 1.4) * s), max(1.0, rng.uniform(6.0, 12.0) * s))
    streak_noise = ndimage.gaussian_filter(rng.standard_normal((hc, wc), dtype=_F32), streak_sigma, mode="wrap")
    streak_noise /= streak_noise.std()
    striation = np.clip(streak_noise - 0.3, 0.0, None) ** 1.2
    fibre_mod = 0.6 + 0.4 * _smooth_field(rng, (hc, wc), 15.0 * s)
    muscle = level_muscle * (0.7 + 0.6 * striation * fibre_mod)
    septa = level_sub * (0.9 + 0.6 * striation[::-1, ::-1] * (fibre_mod > 0.85))

    in_sub = below(y_skin) * (1.0 - below(y_f1))
    in_muscle = below(y_f1) * (1.0 - below(y_f2))
    in_deep_muscle = below(y_f3) if rng.random() < 0.7 else np.zeros_like(in_sub)
    tissue = (
        tissue * (1.0 - in_sub - in_muscle - in_deep_muscle) + septa * in_sub + muscle * (in_muscle + in_deep_muscle)
    )
    tissue = tissue * below(y_skin) + _F32(0.65) * (1.0 - below(y_skin))
    for curve, amplitude, thickness in (
        (y_skin, 0.7, 2.5),
        (y_f1, rng.uniform(0.5, 0.9), rng.uniform(1.5, 3.0)),
        (y_f2, rng.uniform(0.6, 1.0), rng.uniform(1.5, 3.5)),
        (y_f3, rng.uniform(0.4, 0.8), rng.uniform(1.5, 3.0)),
    ):
        line = np.exp(-(((yy - curve[None, :]) / _F32(max(0.7, thickness * s))) ** 2))
        tissue += _F32(amplitude) * line * (0.75 + 0.25 * texture)

    if rng.random() < 0.35:  # bone / pleura: a bright arc casting an acoustic shadow
        x0, x1 = sorted(rng.uniform(0.0, 1.0, 2) * wc)
        x1 = max(x1, x0 + 0.3 * wc)
        y_bone = _wavy_curve(rng, wc, my + rng.uniform(0.86, 0.95) * h, 6.0 * sy)
        lateral = special.expit((xx - x0) / _F32(4.0 * s)) * special.expit((x1 - xx) / _F32(4.0 * s))
        tissue *= 1.0 - 0.85 * below(y_bone) * lateral
        tissue += _F32(1.2) * np.exp(-(((yy - y_bone[None, :]) / _F32(max(0.8, 2.5 * s))) ** 2)) * lateral
    tissue = tissue.astype(_F32)

    # --- artery, nerve place, vessels and decoys (positions in frame coordinates at zero drift) ----------------
    taken: list[tuple[float, float, float]] = []
    area_scale = sy * sx
    log_size = _NERVE_AREA_LOG_SD * float(special.ndtri(min(max(u_size, 1e-6), 1.0 - 1e-6)))
    nerve_area = float(np.clip(_NERVE_AREA_MEDIAN * math.exp(log_size), *_NERVE_AREA_RANGE))
    nerve_area *= area_scale
    nerve_base = _random_outline(rng, nerve_area, (1.2, 2.0), 0.22, 0.35)
    mask_outline = nerve_base.wobbled(  # the annotator's smooth outline: close to, not exactly on, the visible rim
        (1, 2, 3), tuple(rng.uniform(-0.025, 0.025, 3)), tuple(rng.uniform(0, 2 * math.pi, 3))
    ).scaled(rng.uniform(0.98, 1.04))
    nerve_r = nerve_base.scaled(math.sqrt(_NERVE_AREA_RANGE[1] * area_scale / nerve_area) * 1.06).rmax()
    nerve_r = min(nerve_r, 0.9 * nerve_base.scaled(1.3).rmax())  # room for per-frame size changes

    artery_r = rng.uniform(22.0, 34.0) * s
    margin_y, margin_x = my + 2.0, mx + 2.0
    artery = _place(rng, artery_r, (0.45 * h, 0.66 * h), (0.22 * w, 0.78 * w), taken, 0.0)
    artery = artery or (0.55 * h, 0.5 * w)
    taken.append((*artery, artery_r))
    nerve = None
    for _ in range(80):
        angle = rng.uniform(-math.pi * 0.95, math.pi * 0.15)
        if rng.random() < 0.5:
            angle = -math.pi - angle  # mirror: lateral on either side
        dist = artery_r + 0.85 * nerve_r + rng.uniform(3.0, 14.0) * s
        cy, cx = artery[0] + dist * math.sin(angle), artery[1] + dist * math.cos(angle)
        if margin_y + nerve_r < cy < h - margin_y - nerve_r and margin_x + nerve_r < cx < w - margin_x - nerve_r:
            nerve = (cy, cx)
            break
    if nerve is None:  # tiny images: clamp next to the artery
        cy = float(
            np.clip(artery[0] - artery_r - nerve_r, min(margin_y + nerve_r, h / 2), max(h - margin_y - nerve_r, h / 2))
        )
        cx = float(np.clip(artery[1], min(margin_x + nerve_r, w / 2), max(w - margin_x - nerve_r, w / 2)))
        nerve = (cy, cx)
    taken.append((*nerve, 0.9 * nerve_r))

    artery_outline = _Outline(artery_r * rng.uniform(1.0, 1.2), artery_r, rng.uniform(-0.3, 0.3))
    blobs: list[tuple[str, tuple[float, float], _Outline]] = [("artery", artery, artery_outline)]
    deep_y = (0.3 * h, h - margin_y)
    if rng.random() < 0.6:  # a vein: dark, flattened, no honeycomb
        outline = _random_outline(rng, (rng.uniform(12.0, 26.0) * s) ** 2 * math.pi, (1.5, 3.0), 0.12, 0.3)
        centre = _place(rng, outline.rmax(), deep_y, (margin_x, w - margin_x), taken, 6.0 * s)
        if centre:
            blobs.append(("vein", centre, outline))
            taken.append((*centre, outline.rmax()))
    for kind, probability in (("bright", 0.55), ("rimmed", 0.3)):
        if rng.random() < probability:
            outline = _random_outline(rng, nerve_area * rng.uniform(0.4, 1.1), (1.1, 2.0), 0.2, 0.4)
            centre = _place(rng, outline.rmax(), deep_y, (margin_x, w - margin_x), taken, 8.0 * s)
            if centre:
                blobs.append((kind, centre, outline))
                taken.append((*centre, outline.rmax()))

    for kind, (cy, cx), outline in blobs:
        drawn = _blob_alpha((hc, wc), cy + my, cx + mx, outline, edge)
        if drawn is None:
            continue
        slices, alpha, depth = drawn
        local = tissue[slices]
        rim = np.exp(-((depth / _F32(max(1.0, 2.5 * s))) ** 2))
        if kind in ("artery", "vein"):
            fill = _F32(0.03 if kind == "artery" else 0.06)
            local[...] = local * (1 - alpha) + fill * alpha + (0.7 if kind == "artery" else 0.25) * rim * level_deep
        elif kind == "bright":
            local[...] = local * (1 - alpha) + alpha * level_deep * rng.uniform(1.4, 1.9) * (
                0.9 + 0.2 * texture[slices]
            )
        else:  # rimmed dark oval (lymph-node-like)
            local[...] = local * (1 - alpha) + alpha * level_deep * 0.45 + 0.9 * rim * level_deep
        if kind in ("artery", "vein"):  # posterior acoustic enhancement
            r = outline.rmax()
            lateral = np.exp(-(((xx - (cx + mx)) / _F32(r)) ** 4))
            below_vessel = np.clip((yy - (cy + my)) / _F32(r), 0.0, 1.0) * np.exp(
                -np.clip(yy - (cy + my) - r, 0, None) / _F32(3 * r)
            )
            tissue *= 1.0 + (0.35 if kind == "artery" else 0.2) * lateral * below_vessel
    tissue = tissue.astype(_F32)

    # --- the nerve: hyperechoic oval with hypoechoic fascicles ----------------------------------------------------
    r_eq = math.sqrt(nerve_area / math.pi)
    fascicles: list[tuple[float, float, float]] = []
    target = int(rng.integers(4, 10))
    for _ in range(300):
        if len(fascicles) >= target:
            break
        fr = rng.uniform(0.14, 0.27) * r_eq
        fy, fx = rng.uniform(-1.0, 1.0, 2) * nerve_base.rmax()
        inner = float(nerve_base.radius(np.array(math.atan2(fy, fx))))
        if math.hypot(fy, fx) + 1.2 * fr > 0.9 * inner:
            continue
        if all(math.hypot(fy - gy, fx - gx) > 1.15 * (fr + gr) + 0.04 * r_eq for gy, gx, gr in fascicles):
            fascicles.append((fy, fx, fr))
    fascicle_darkness = rng.uniform(0.6, 1.0, len(fascicles))
    contrast = rng.uniform(0.3, 0.95)  # per subject; some nerves are faint
    slot_decoy = bool(rng.random() < 0.2)  # a dimmer fascicle-less blob at the nerve place in negative frames
    decoy_outline = _random_outline(rng, nerve_area * rng.uniform(0.7, 1.1), (1.2, 2.0), 0.22, 0.35)

    # --- speckle: complex Gaussian fields smoothed anisotropically (grains elongated horizontally); two compounded
    # looks, each a fixed base field plus a slowly rotating mix of two innovation fields ----------------------------
    sigma = (max(0.45, 1.1 * s), max(0.6, 3.2 * s))

    def speckle_field() -> np.ndarray:
        raw = ndimage.gaussian_filter(rng.standard_normal((hc, wc), dtype=_F32), sigma, mode="wrap")
        return raw / raw.std()

    looks = [[speckle_field() for _ in range(6)] for _ in range(2)]  # (re, im) x (base, change 1, change 2)
    keep = rng.uniform(0.9, 0.97)  # correlation of every frame's speckle with the subject's base speckle
    speckle_angle = np.cumsum(rng.normal(0.0, 0.35, num_frames))

    # --- per-frame variation --------------------------------------------------------------------------------------
    size_jitter = 1.0 + 0.05 * _smooth_series(rng, num_frames, 2.0)
    contrast_jitter = 1.0 + 0.08 * _smooth_series(rng, num_frames, 2.0)
    shift_y = 1.2 * s * _smooth_series(rng, num_frames, 3.0)
    shift_x = 1.5 * s * _smooth_series(rng, num_frames, 3.0)
    run_edge = np.zeros(num_frames, dtype=bool)
    run_edge[1:] |= presence[1:] & ~presence[:-1]
    run_edge[:-1] |= presence[:-1] & ~presence[1:]

    absorption = rng.uniform(0.8, 1.6)
    attenuation = np.exp(-absorption * np.arange(h, dtype=_F32) / _F32(h))[:, None].astype(_F32)
    lateral_gain = (1.0 - 0.12 * ((np.arange(w, dtype=_F32) - w / 2) / (w / 2)) ** 4)[None, :].astype(_F32)
    gamma = rng.uniform(0.6, 0.8)
    speckle_power = _F32(gamma * rng.uniform(0.6, 0.75) / 2.0)  # applied to |z|^2; < gamma / 2 softens the speckle
    gain = rng.uniform(0.85, 1.15) * 0.42 / (level_deep * math.exp(-absorption * 0.5)) ** gamma

    subject = _Subject(duplicate=duplicate, rate_target=rate)
    for t in range(num_frames):
        oy, ox = my + float(drift_y[t]), mx + float(drift_x[t])
        frame = _bilinear_crop(tissue, oy, ox, h, w)
        mask = np.zeros((h, w), dtype=np.uint8)
        cy = nerve[0] + my - oy + float(shift_y[t])
        cx = nerve[1] + mx - ox + float(shift_x[t])
        c = contrast * float(contrast_jitter[t]) * (0.65 if run_edge[t] else 1.0)
        if presence[t]:
            area = nerve_area * float(size_jitter[t]) * (0.85 if run_edge[t] else 1.0)
            area = float(np.clip(area, _NERVE_AREA_RANGE[0] * area_scale, _NERVE_AREA_RANGE[1] * area_scale))
            k = math.sqrt(area / mask_outline.area())
            visible, annotated = nerve_base.scaled(k), mask_outline.scaled(k)
            local = _local_polar((h, w), cy, cx, max(visible.rmax(), annotated.rmax()) + edge + 1.0)
            if local is not None:
                slices, dy, dx, rho, theta = local
                depth = visible.radius(theta) - rho
                alpha = np.clip(0.5 + depth / edge, 0.0, 1.0)
                rim = np.clip(1.0 - depth / max(1.0, 6.0 * s), 0.0, 1.0)
                holes = np.zeros_like(rho)
                for (fy, fx, fr), darkness in zip(fascicles, fascicle_darkness, strict=True):
                    d = np.hypot(dy - _F32(fy * k), dx - _F32(fx * k))
                    np.maximum(holes, darkness * np.clip(0.5 + (fr * k - d) / (1.8 * edge), 0.0, 1.0), out=holes)
                level = (
                    level_deep * (1.0 + 0.75 * c) * (1.0 + 0.35 * c * rim) * (1.0 - min(0.75, 0.35 + 0.4 * c) * holes)
                )
                region = frame[slices]
                region[...] = region * (1 - alpha) + alpha * level
                mask[slices][annotated.radius(theta) > rho] = 255
        elif slot_decoy:
            drawn = _blob_alpha((h, w), cy, cx, decoy_outline, edge)
            if drawn is not None:
                slices, alpha, _ = drawn
                region = frame[slices]
                region[...] = region * (1 - alpha) + alpha * level_deep * (1.0 + 0.35 * c)

        angle = float(speckle_angle[t])
        iy, ix = round(oy), round(ox)
        window = (slice(iy, iy + h), slice(ix, ix + w))
        mix = math.sqrt(1.0 - keep**2)
        weights = (_F32(keep), _F32(mix * math.cos(angle)), _F32(mix * math.sin(angle)))
        intensity = np.zeros((h, w), dtype=_F32)
        for fields in looks:
            re = weights[0] * fields[0][window] + weights[1] * fields[2][window] + weights[2] * fields[4][window]
            im = weights[0] * fields[1][window] + weights[1] * fields[3][window] + weights[2] * fields[5][window]
            intensity += re * re + im * im
        speckle = np.power(intensity * _F32(0.25), speckle_power)  # mean-one intensity, log-compressed
        echo = np.power(np.maximum(frame, 0.0) * attenuation * lateral_gain, _F32(gamma))
        speckle_mean = math.gamma(2.0 + speckle_power) / math.gamma(2.0) / 2.0**speckle_power  # Gamma(2, 1/2) moment
        image = np.clip(_F32(255.0 * gain / speckle_mean) * echo * speckle + 0.5, 0.0, 255.0)
        subject.images.append(image.astype(np.uint8))
        subject.masks.append(mask)

    if duplicate is not None:
        positive, negative = duplicate
        subject.images[negative] = subject.images[positive].copy()
    return subject


def _check_arguments(
    num_subjects: int, frames_per_subject: int, num_test_images: int, seed: int, image_shape: Sequence[int]
) -> tuple[int, int, int, int, tuple[int, int]]:
    """Validate and normalise the arguments of :func:`generate_dataset`."""
    try:
        num_subjects, frames_per_subject, num_test_images, seed = (
            operator.index(v) for v in (num_subjects, frames_per_subject, num_test_images, seed)
        )
    except TypeError as err:
        raise TypeError(
            "num_subjects, frames_per_subject, num_test_images and seed must be integers, got "
            f"{num_subjects!r}, {frames_per_subject!r}, {num_test_images!r}, {seed!r}."
        ) from err
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}.")
    if frames_per_subject < 2:
        raise ValueError(
            f"frames_per_subject must be >= 2 (each subject holds a positive and a negative run), got "
            f"{frames_per_subject}."
        )
    if num_test_images < 0:
        raise ValueError(f"num_test_images must be >= 0, got {num_test_images}.")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    try:
        shape = tuple(operator.index(v) for v in image_shape)
    except TypeError as err:
        raise ValueError(f"image_shape must be a pair of integers (H, W), got {image_shape!r}.") from err
    if len(shape) != 2 or min(shape) < _MIN_SIDE:
        raise ValueError(
            f"image_shape must be (H, W) with both sides >= {_MIN_SIDE}, got {tuple(image_shape)!r}; "
            f"use e.g. (64, 96) for tests or the default {IMAGE_SHAPE}."
        )
    return num_subjects, frames_per_subject, num_test_images, seed, (shape[0], shape[1])


def _save_tiff(array: np.ndarray, path: Path) -> None:
    """Write an ``[H, W]`` uint8 array as an uncompressed 8-bit grayscale (mode ``"L"``) TIFF."""
    Image.fromarray(array).save(path, format="TIFF", compression="raw")


def _write_dataset(
    root: Path, num_subjects: int, frames_per_subject: int, num_test_images: int, seed: int, shape: tuple[int, int]
) -> None:
    """Generate every file of the dataset into the (empty) folder ``root``."""
    train, test = root / "train", root / "test"
    train.mkdir()
    test.mkdir()
    areas: list[int] = []
    subject_rates: dict[str, float] = {}
    subject_targets: dict[str, float] = {}
    duplicates: list[dict[str, object]] = []
    num_positive = 0
    for index in range(1, num_subjects + 1):
        subject = _simulate_subject(seed, _STREAM_TRAIN, index, frames_per_subject, shape)
        positives = 0
        for frame, (image, mask) in enumerate(zip(subject.images, subject.masks, strict=True), start=1):
            _save_tiff(image, train / f"{index}_{frame}.tif")
            _save_tiff(mask, train / f"{index}_{frame}_mask.tif")
            area = int(np.count_nonzero(mask))
            if area:
                positives += 1
                areas.append(area)
        num_positive += positives
        subject_rates[str(index)] = round(positives / frames_per_subject, 4)
        subject_targets[str(index)] = round(subject.rate_target, 4)
        if subject.duplicate is not None:
            positive, negative = subject.duplicate
            duplicates.append(
                {"subject": index, "with_mask": f"{index}_{positive + 1}", "without_mask": f"{index}_{negative + 1}"}
            )

    test_images: list[np.ndarray] = []
    for group in range(1, math.ceil(num_test_images / _TEST_FRAMES_PER_SUBJECT) + 1):
        frames = _simulate_subject(seed, _STREAM_TEST, group, _TEST_FRAMES_PER_SUBJECT, shape, with_duplicate=False)
        test_images.extend(frames.images)
    order = np.random.default_rng([seed, _STREAM_TEST_ORDER, 1]).permutation(num_test_images)
    for test_id, source in enumerate(order, start=1):
        _save_tiff(test_images[int(source)], test / f"{test_id}.tif")

    num_frames = num_subjects * frames_per_subject
    summary = {
        "name": "synthetic ultrasound nerve segmentation",
        "generator": f"{__name__}.generate_dataset",
        "synthetic_version": SYNTHETIC_VERSION,
        "parameters": {
            "num_subjects": num_subjects,
            "frames_per_subject": frames_per_subject,
            "num_test_images": num_test_images,
            "seed": seed,
            "image_shape": list(shape),
        },
        "layout": {
            "image": "train/{subject}_{frame}.tif",
            "mask": "train/{subject}_{frame}_mask.tif",
            "test": "test/{id}.tif",
            "format": "uncompressed TIFF, 8-bit grayscale (PIL mode L); masks 0/255",
            "width": shape[1],
            "height": shape[0],
        },
        "num_train_frames": num_frames,
        "num_positive": num_positive,
        "positive_rate": round(num_positive / num_frames, 4),
        "per_subject_positive_rate": subject_rates,
        "per_subject_target_rate": subject_targets,
        "mask_area_px": {
            "min": int(min(areas)) if areas else 0,
            "median": float(np.median(areas)) if areas else 0.0,
            "max": int(max(areas)) if areas else 0,
        },
        "duplicate_pairs": duplicates,
        "num_test_images": num_test_images,
    }
    (root / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def generate_dataset(
    out_dir: str | os.PathLike,
    num_subjects: int = 16,
    frames_per_subject: int = 30,
    num_test_images: int = 40,
    seed: int = 0,
    image_shape: tuple[int, int] = IMAGE_SHAPE,
) -> Path:
    """Write the synthetic dataset into ``out_dir`` (which must not exist or be empty) and return its path.

    The files are written into a sibling temporary folder that is renamed to ``out_dir`` at the end, so an
    interrupted run never leaves a half-written ``out_dir``. If another process completes ``out_dir`` meanwhile, its
    result is kept and returned. The same arguments always give byte-identical files.

    Args:
        out_dir: destination folder; its parent is created if needed.
        num_subjects: number of training subjects ``S`` (>= 1); files ``train/{1..S}_{frame}.tif``.
        frames_per_subject: frames per subject ``F`` (>= 2), each with a ``_mask.tif``.
        num_test_images: unlabelled images ``test/{1..N}.tif`` (>= 0), drawn from separate subjects.
        seed: non-negative integer seed; subject ``k`` of seed ``seed`` is the same whatever ``num_subjects`` is.
        image_shape: ``(H, W)`` of every image, both >= 32; anatomy and nerve areas scale with the image area
            (the quoted areas are for the default ``(420, 580)``).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`, holding ``train/``, ``test/`` and ``dataset.json`` (parameters and
        statistics: positive rate, per-subject rates, mask-area range, conflicting duplicate pairs).

    Raises:
        ValueError: for an argument out of range.
        FileExistsError: when ``out_dir`` exists and is not an empty folder.
    """
    num_subjects, frames_per_subject, num_test_images, seed, shape = _check_arguments(
        num_subjects, frames_per_subject, num_test_images, seed, image_shape
    )
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"Cannot generate the synthetic dataset into {str(out_dir)!r}: it exists and is not an empty folder. "
            "Remove it or choose another out_dir."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        _write_dataset(tmp, num_subjects, frames_per_subject, num_test_images, seed, shape)
        try:
            os.replace(tmp, out_dir)  # atomic; also replaces an empty out_dir
        except OSError:
            if (out_dir / "dataset.json").is_file():  # another process finished first: keep its result
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def default_dataset_dir() -> Path:
    """Return the cached default dataset, generating it on first use (16 subjects x 30 frames, seed 0).

    The cache root is ``$NERVESEG_CACHE`` if set, else ``~/.cache/nerveseg``; the folder is
    ``f"synthetic-v{SYNTHETIC_VERSION}"`` inside it. An existing folder is returned at once. Concurrent first calls
    are safe: each generates into its own temporary folder and the first to finish wins.

    Returns:
        The dataset folder (see :func:`generate_dataset`).
    """
    root = Path(os.environ.get("NERVESEG_CACHE") or Path.home() / ".cache" / "nerveseg").expanduser()
    folder = root / f"synthetic-v{SYNTHETIC_VERSION}"
    if folder.is_dir() and (folder / "dataset.json").is_file():
        return folder
    return generate_dataset(folder)
