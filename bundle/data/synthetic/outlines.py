"""Shapes and their placement: smooth star-shaped outlines, their soft coverage on the pixel grid, and random centres
that keep a gap from the structures already placed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Outline", "blob_alpha", "local_polar", "place_disc", "random_outline"]

_F32 = np.float32


@dataclass(frozen=True)
class Outline:
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

    def scaled(self, factor: float) -> Outline:
        """The same outline scaled by ``factor`` about its centre."""
        return Outline(self.ax * factor, self.ay * factor, self.rot, self.orders, self.amps, self.phases)

    def with_area(self, area: float) -> Outline:
        """The same outline scaled to enclose ``area`` px^2."""
        return self.scaled(math.sqrt(area / self.area()))

    def wobbled(self, orders: Sequence[int], amps: Sequence[float], phases: Sequence[float]) -> Outline:
        """The outline with extra harmonics added to its wobble."""
        return Outline(
            self.ax,
            self.ay,
            self.rot,
            self.orders + tuple(orders),
            self.amps + tuple(amps),
            self.phases + tuple(phases),
        )


def random_outline(
    rng: np.random.Generator, area: float, aspect: tuple[float, float], irregularity: float, tilt: float
) -> Outline:
    """A random smooth, irregular, roughly elliptical outline enclosing ``area`` px^2 (wider than tall)."""
    q = rng.uniform(*aspect)
    orders = (2, 3, 4, 5)
    amps = rng.uniform(-1.0, 1.0, len(orders)) * irregularity / np.array(orders, dtype=float) ** 0.7
    phases = rng.uniform(0.0, 2.0 * math.pi, len(orders))
    outline = Outline(math.sqrt(q), 1.0 / math.sqrt(q), rng.uniform(-tilt, tilt), orders, tuple(amps), tuple(phases))
    return outline.with_area(area)


def local_polar(
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


def blob_alpha(
    shape: tuple[int, int], cy: float, cx: float, outline: Outline, edge: float
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Soft coverage (``alpha > 0.5`` exactly inside the outline) and signed depth (px) of a blob in its box."""
    local = local_polar(shape, cy, cx, outline.rmax() + edge + 1.0)
    if local is None:
        return None
    slices, _, _, rho, theta = local
    depth = outline.radius(theta) - rho
    return slices, np.clip(0.5 + depth / edge, 0.0, 1.0), depth


def place_disc(
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
