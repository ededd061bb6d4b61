"""The nerve: its size, the visible outline and the annotator's outline, the hypoechoic fascicles inside it (the
"honeycomb"), and painting it, or the dimmer fascicle-less decoy at its place, into a frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from nerveseg.bundle.data.synthetic.canvas import CanvasGeometry
from nerveseg.bundle.data.synthetic.outlines import Outline, blob_alpha, local_polar, random_outline

__all__ = [
    "NERVE_AREA_LOG_SD",
    "NERVE_AREA_MEDIAN",
    "NERVE_AREA_RANGE",
    "NerveInterior",
    "NerveOutlines",
    "draw_nerve_interior",
    "draw_nerve_outlines",
    "frame_nerve_area",
    "paint_nerve",
    "paint_slot_decoy",
]

# Nerve mask area in px at 420 x 580 (scaled with the image area): per-subject log-normal size, per-frame clip.
NERVE_AREA_MEDIAN: float = 7400.0
NERVE_AREA_LOG_SD: float = 0.38
NERVE_AREA_RANGE: tuple[float, float] = (2900.0, 16500.0)

_F32 = np.float32


@dataclass(frozen=True)
class NerveOutlines:
    """A subject's nerve shape.

    Args:
        area: the subject's nerve area at this image size, px^2 (frames vary around it).
        visible: the outline of the nerve as drawn.
        annotated: the annotator's smooth outline, close to, not exactly on, the visible rim.
        placement_radius: room the nerve needs around its centre for the per-frame size changes, px.
    """

    area: float
    visible: Outline
    annotated: Outline
    placement_radius: float


@dataclass(frozen=True)
class NerveInterior:
    """How a subject's nerve looks inside.

    Args:
        fascicles: ``(y, x, radius)`` of each fascicle relative to the nerve centre, px at the subject's nerve area.
        darkness: per-fascicle darkness in ``[0.6, 1]``.
        contrast: the nerve's contrast to the tissue (some nerves are faint).
        slot_decoy: negative frames show a dimmer fascicle-less blob at the nerve's place.
        decoy_outline: the outline of that decoy.
    """

    fascicles: tuple[tuple[float, float, float], ...]
    darkness: np.ndarray
    contrast: float
    slot_decoy: bool
    decoy_outline: Outline


def draw_nerve_outlines(rng: np.random.Generator, area_scale: float, u_size: float) -> NerveOutlines:
    """A subject's nerve outlines, its log-normal area taken at the quantile ``u_size``, scaled by ``area_scale``."""
    log_size = NERVE_AREA_LOG_SD * float(special.ndtri(min(max(u_size, 1e-6), 1.0 - 1e-6)))
    nerve_area = float(np.clip(NERVE_AREA_MEDIAN * math.exp(log_size), *NERVE_AREA_RANGE))
    nerve_area *= area_scale
    nerve_base = random_outline(rng, nerve_area, (1.2, 2.0), 0.22, 0.35)
    mask_outline = nerve_base.wobbled(
        (1, 2, 3), tuple(rng.uniform(-0.025, 0.025, 3)), tuple(rng.uniform(0, 2 * math.pi, 3))
    ).scaled(rng.uniform(0.98, 1.04))
    nerve_r = nerve_base.scaled(math.sqrt(NERVE_AREA_RANGE[1] * area_scale / nerve_area) * 1.06).rmax()
    nerve_r = min(nerve_r, 0.9 * nerve_base.scaled(1.3).rmax())  # room for per-frame size changes
    return NerveOutlines(nerve_area, nerve_base, mask_outline, nerve_r)


def draw_nerve_interior(rng: np.random.Generator, outlines: NerveOutlines) -> NerveInterior:
    """A subject's fascicles (4-9, not touching each other or the rim), contrast and slot decoy."""
    r_eq = math.sqrt(outlines.area / math.pi)
    fascicles: list[tuple[float, float, float]] = []
    target = int(rng.integers(4, 10))
    for _ in range(300):
        if len(fascicles) >= target:
            break
        fr = rng.uniform(0.14, 0.27) * r_eq
        fy, fx = rng.uniform(-1.0, 1.0, 2) * outlines.visible.rmax()
        inner = float(outlines.visible.radius(np.array(math.atan2(fy, fx))))
        if math.hypot(fy, fx) + 1.2 * fr > 0.9 * inner:
            continue
        if all(math.hypot(fy - gy, fx - gx) > 1.15 * (fr + gr) + 0.04 * r_eq for gy, gx, gr in fascicles):
            fascicles.append((fy, fx, fr))
    darkness = rng.uniform(0.6, 1.0, len(fascicles))
    contrast = rng.uniform(0.3, 0.95)
    slot_decoy = bool(rng.random() < 0.2)
    decoy_outline = random_outline(rng, outlines.area * rng.uniform(0.7, 1.1), (1.2, 2.0), 0.22, 0.35)
    return NerveInterior(tuple(fascicles), darkness, contrast, slot_decoy, decoy_outline)


def frame_nerve_area(outlines: NerveOutlines, size_jitter: float, at_run_edge: bool, area_scale: float) -> float:
    """The nerve area of one frame (px^2): jittered, smaller at the edge of a run, clipped to the challenge's range."""
    area = outlines.area * size_jitter * (0.85 if at_run_edge else 1.0)
    return float(np.clip(area, NERVE_AREA_RANGE[0] * area_scale, NERVE_AREA_RANGE[1] * area_scale))


def paint_nerve(
    frame: np.ndarray,
    mask: np.ndarray,
    nerve: tuple[NerveOutlines, NerveInterior],
    centre: tuple[float, float],
    area: float,
    contrast: float,
    level_deep: float,
    geometry: CanvasGeometry,
) -> None:
    """Paint the nerve of ``area`` px^2 at ``centre`` into the ``[H, W]`` ``frame`` and its annotation into ``mask``.

    The nerve is a hyperechoic oval with a brighter rim and hypoechoic fascicles, all stronger with ``contrast``;
    ``mask`` gets 255 inside the annotated outline.
    """
    outlines, interior = nerve
    cy, cx = centre
    s, edge, c = geometry.s, geometry.edge, contrast
    k = math.sqrt(area / outlines.annotated.area())
    visible, annotated = outlines.visible.scaled(k), outlines.annotated.scaled(k)
    local = local_polar(frame.shape, cy, cx, max(visible.rmax(), annotated.rmax()) + edge + 1.0)
    if local is None:
        return
    slices, dy, dx, rho, theta = local
    depth = visible.radius(theta) - rho
    alpha = np.clip(0.5 + depth / edge, 0.0, 1.0)
    rim = np.clip(1.0 - depth / max(1.0, 6.0 * s), 0.0, 1.0)
    holes = np.zeros_like(rho)
    for (fy, fx, fr), darkness in zip(interior.fascicles, interior.darkness, strict=True):
        d = np.hypot(dy - _F32(fy * k), dx - _F32(fx * k))
        np.maximum(holes, darkness * np.clip(0.5 + (fr * k - d) / (1.8 * edge), 0.0, 1.0), out=holes)
    level = level_deep * (1.0 + 0.75 * c) * (1.0 + 0.35 * c * rim) * (1.0 - min(0.75, 0.35 + 0.4 * c) * holes)
    region = frame[slices]
    region[...] = region * (1 - alpha) + alpha * level
    mask[slices][annotated.radius(theta) > rho] = 255


def paint_slot_decoy(
    frame: np.ndarray, outline: Outline, centre: tuple[float, float], contrast: float, level_deep: float, edge: float
) -> None:
    """Paint the fascicle-less decoy at the nerve's place into the ``[H, W]`` ``frame`` (a negative frame)."""
    drawn = blob_alpha(frame.shape, centre[0], centre[1], outline, edge)
    if drawn is not None:
        slices, alpha, _ = drawn
        region = frame[slices]
        region[...] = region * (1 - alpha) + alpha * level_deep * (1.0 + 0.35 * contrast)
