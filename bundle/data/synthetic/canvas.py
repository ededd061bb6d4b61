"""The canvas a subject's frames are cropped from: sizes and length scales relative to the challenge images, the
probe's slow drift across the canvas, and sub-pixel crops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nerveseg.bundle.data.synthetic.noise_fields import smooth_series

__all__ = ["IMAGE_SHAPE", "CanvasGeometry", "bilinear_crop", "draw_probe_drift"]

IMAGE_SHAPE: tuple[int, int] = (420, 580)
"""(H, W) of the challenge images; the anatomy's lengths and areas scale relative to it."""

_F32 = np.float32


@dataclass(frozen=True)
class CanvasGeometry:
    """Frame and canvas sizes of one subject and the length scales that follow from them.

    The canvas is the frame plus a margin on every side (room for the probe's drift); canvas row ``my + y`` is frame
    row ``y`` at zero drift.

    Args:
        h: frame height, px.
        w: frame width, px.
        sy: ``h`` relative to the challenge's height.
        sx: ``w`` relative to the challenge's width.
        s: length scale relative to the challenge images, ``sqrt(sy * sx)``.
        edge: width of the soft edges of drawn structures, px.
        my: vertical canvas margin, px.
        mx: horizontal canvas margin, px.
    """

    h: int
    w: int
    sy: float
    sx: float
    s: float
    edge: float
    my: int
    mx: int

    @classmethod
    def for_shape(cls, shape: tuple[int, int]) -> CanvasGeometry:
        """The geometry of ``(H, W)`` frames."""
        h, w = shape
        sy, sx = h / IMAGE_SHAPE[0], w / IMAGE_SHAPE[1]
        s = math.sqrt(sy * sx)
        return cls(h, w, sy, sx, s, max(0.7, 1.6 * s), math.ceil(0.06 * h) + 2, math.ceil(0.06 * w) + 2)

    @property
    def hc(self) -> int:
        """Canvas height, px."""
        return self.h + 2 * self.my + 1

    @property
    def wc(self) -> int:
        """Canvas width, px."""
        return self.w + 2 * self.mx + 1

    @property
    def area_scale(self) -> float:
        """Frame area relative to the challenge images (nerve and blob areas scale with it)."""
        return self.sy * self.sx

    def rows(self) -> np.ndarray:
        """Canvas row coordinates, ``[Hc, 1]`` float32."""
        return np.arange(self.hc, dtype=_F32)[:, None]

    def columns(self) -> np.ndarray:
        """Canvas column coordinates, ``[1, Wc]`` float32."""
        return np.arange(self.wc, dtype=_F32)[None, :]


def draw_probe_drift(
    rng: np.random.Generator, geometry: CanvasGeometry, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """The probe's drift per frame, ``(drift_y, drift_x)`` in px: a smooth trajectory of the whole anatomy, mostly
    sideways, centred on zero and kept inside the canvas margins."""
    my, mx = geometry.my, geometry.mx
    speed = rng.uniform(0.15, 1.0) * geometry.s  # px per frame
    velocity = smooth_series(rng, num_frames, 2.0) * speed
    drift_x = np.cumsum(velocity)
    drift_y = np.cumsum(smooth_series(rng, num_frames, 2.0) * speed * 0.35)
    drift_x -= drift_x.mean()
    drift_y -= drift_y.mean()
    drift_x *= min(1.0, (mx - 1.5) / max(np.abs(drift_x).max(), 1e-9))
    drift_y *= min(1.0, (my - 1.5) / max(np.abs(drift_y).max(), 1e-9))
    return drift_y, drift_x


def bilinear_crop(canvas: np.ndarray, oy: float, ox: float, h: int, w: int) -> np.ndarray:
    """The ``h x w`` window of ``canvas`` whose top-left corner is at the fractional position ``(oy, ox)``."""
    iy, ix = math.floor(oy), math.floor(ox)
    fy, fx = _F32(oy - iy), _F32(ox - ix)
    top = canvas[iy : iy + h, ix : ix + w] * (1 - fx) + canvas[iy : iy + h, ix + 1 : ix + w + 1] * fx
    bottom = canvas[iy + 1 : iy + h + 1, ix : ix + w] * (1 - fx) + canvas[iy + 1 : iy + h + 1, ix + 1 : ix + w + 1] * fx
    return top * (1 - fy) + bottom * fy
