"""The round structures beside the nerve: the artery it lies against, a dark vein, and decoys (bright blobs and
rimmed dark ovals without fascicles); where they go and how they are painted into the tissue."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from nerveseg.bundle.data.synthetic.canvas import CanvasGeometry
from nerveseg.bundle.data.synthetic.outlines import Outline, blob_alpha, place_disc, random_outline
from nerveseg.bundle.data.synthetic.tissue_layers import Tissue

__all__ = ["Blob", "paint_blobs", "place_blobs"]

_F32 = np.float32


class Blob(NamedTuple):
    """One structure: ``kind`` is ``"artery"``, ``"vein"``, ``"bright"`` or ``"rimmed"``; ``centre`` is ``(y, x)`` in
    frame coordinates at zero drift."""

    kind: str
    centre: tuple[float, float]
    outline: Outline


def place_blobs(
    rng: np.random.Generator, geometry: CanvasGeometry, nerve_area: float, nerve_radius: float
) -> tuple[tuple[float, float], list[Blob]]:
    """Place the artery, the nerve next to it, then a vein and decoys where they do not overlap.

    Args:
        rng: the subject's random stream.
        geometry: the subject's frame and canvas sizes.
        nerve_area: the subject's nerve area, px^2 (decoys are sized like it).
        nerve_radius: room the nerve needs, px, for its per-frame size changes.

    Returns:
        ``(nerve_centre, blobs)``: the nerve's centre (frame coordinates at zero drift) and the blobs, artery first.
    """
    h, w = geometry.h, geometry.w
    taken: list[tuple[float, float, float]] = []
    artery_r = rng.uniform(22.0, 34.0) * geometry.s
    artery = place_disc(rng, artery_r, (0.45 * h, 0.66 * h), (0.22 * w, 0.78 * w), taken, 0.0)
    artery = artery or (0.55 * h, 0.5 * w)
    taken.append((*artery, artery_r))
    nerve = _place_nerve(rng, geometry, artery, artery_r, nerve_radius)
    taken.append((*nerve, 0.9 * nerve_radius))
    artery_outline = Outline(artery_r * rng.uniform(1.0, 1.2), artery_r, rng.uniform(-0.3, 0.3))
    return nerve, [Blob("artery", artery, artery_outline), *_place_decoys(rng, geometry, nerve_area, taken)]


def _place_nerve(
    rng: np.random.Generator,
    geometry: CanvasGeometry,
    artery: tuple[float, float],
    artery_r: float,
    nerve_r: float,
) -> tuple[float, float]:
    """A centre beside the artery (above or lateral, either side) that keeps the nerve inside the frame margins."""
    h, w, s = geometry.h, geometry.w, geometry.s
    margin_y, margin_x = geometry.my + 2.0, geometry.mx + 2.0
    for _ in range(80):
        angle = rng.uniform(-math.pi * 0.95, math.pi * 0.15)
        if rng.random() < 0.5:
            angle = -math.pi - angle  # mirror: lateral on either side
        dist = artery_r + 0.85 * nerve_r + rng.uniform(3.0, 14.0) * s
        cy, cx = artery[0] + dist * math.sin(angle), artery[1] + dist * math.cos(angle)
        if margin_y + nerve_r < cy < h - margin_y - nerve_r and margin_x + nerve_r < cx < w - margin_x - nerve_r:
            return cy, cx
    # tiny images: clamp next to the artery
    cy = float(
        np.clip(artery[0] - artery_r - nerve_r, min(margin_y + nerve_r, h / 2), max(h - margin_y - nerve_r, h / 2))
    )
    cx = float(np.clip(artery[1], min(margin_x + nerve_r, w / 2), max(w - margin_x - nerve_r, w / 2)))
    return cy, cx


def _place_decoys(
    rng: np.random.Generator, geometry: CanvasGeometry, nerve_area: float, taken: list[tuple[float, float, float]]
) -> list[Blob]:
    """Maybe a vein (dark, flattened, no honeycomb), a bright blob and a rimmed dark oval, each clear of ``taken``."""
    h, w, s = geometry.h, geometry.w, geometry.s
    margin_y, margin_x = geometry.my + 2.0, geometry.mx + 2.0
    deep_y = (0.3 * h, h - margin_y)
    blobs: list[Blob] = []
    if rng.random() < 0.6:
        outline = random_outline(rng, (rng.uniform(12.0, 26.0) * s) ** 2 * math.pi, (1.5, 3.0), 0.12, 0.3)
        centre = place_disc(rng, outline.rmax(), deep_y, (margin_x, w - margin_x), taken, 6.0 * s)
        if centre:
            blobs.append(Blob("vein", centre, outline))
            taken.append((*centre, outline.rmax()))
    for kind, probability in (("bright", 0.55), ("rimmed", 0.3)):
        if rng.random() < probability:
            outline = random_outline(rng, nerve_area * rng.uniform(0.4, 1.1), (1.1, 2.0), 0.2, 0.4)
            centre = place_disc(rng, outline.rmax(), deep_y, (margin_x, w - margin_x), taken, 8.0 * s)
            if centre:
                blobs.append(Blob(kind, centre, outline))
                taken.append((*centre, outline.rmax()))
    return blobs


def paint_blobs(rng: np.random.Generator, geometry: CanvasGeometry, tissue: Tissue, blobs: list[Blob]) -> np.ndarray:
    """The tissue's ``[Hc, Wc]`` float32 echo with the blobs painted in (``tissue`` itself is left unchanged).

    Vessels are anechoic with a bright wall and posterior acoustic enhancement; bright decoys are hyperechoic and
    textured; rimmed decoys are dark ovals with a bright rim (lymph-node-like).
    """
    canvas = tissue.echo.copy()
    g = geometry
    for kind, (cy, cx), outline in blobs:
        drawn = blob_alpha((g.hc, g.wc), cy + g.my, cx + g.mx, outline, g.edge)
        if drawn is None:
            continue
        slices, alpha, depth = drawn
        local = canvas[slices]
        level_deep = tissue.level_deep
        rim = np.exp(-((depth / _F32(max(1.0, 2.5 * g.s))) ** 2))
        if kind in ("artery", "vein"):
            fill = _F32(0.03 if kind == "artery" else 0.06)
            local[...] = local * (1 - alpha) + fill * alpha + (0.7 if kind == "artery" else 0.25) * rim * level_deep
            _enhance_behind(canvas, g, kind, cy, cx, outline.rmax())
        elif kind == "bright":
            local[...] = local * (1 - alpha) + alpha * level_deep * rng.uniform(1.4, 1.9) * (
                0.9 + 0.2 * tissue.texture[slices]
            )
        else:  # rimmed dark oval (lymph-node-like)
            local[...] = local * (1 - alpha) + alpha * level_deep * 0.45 + 0.9 * rim * level_deep
    return canvas.astype(_F32)


def _enhance_behind(canvas: np.ndarray, geometry: CanvasGeometry, kind: str, cy: float, cx: float, r: float) -> None:
    """Posterior acoustic enhancement below a vessel of radius ``r`` centred at ``(cy, cx)``, in place."""
    rows, columns, my, mx = geometry.rows(), geometry.columns(), geometry.my, geometry.mx
    lateral = np.exp(-(((columns - (cx + mx)) / _F32(r)) ** 4))
    below_vessel = np.clip((rows - (cy + my)) / _F32(r), 0.0, 1.0) * np.exp(
        -np.clip(rows - (cy + my) - r, 0, None) / _F32(3 * r)
    )
    canvas *= 1.0 + (0.35 if kind == "artery" else 0.2) * lateral * below_vessel
