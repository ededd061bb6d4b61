"""The layered tissue of a subject's canvas: skin, subcutaneous fat with septa, striated muscle between wavy
hyperechoic fascia, and sometimes a bright bone or pleura arc casting an acoustic shadow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from nerveseg.bundle.data.synthetic.canvas import CanvasGeometry
from nerveseg.bundle.data.synthetic.noise_fields import filtered_noise, smooth_field, wavy_curve

__all__ = ["Tissue", "draw_tissue"]

_F32 = np.float32


@dataclass(frozen=True)
class Tissue:
    """A subject's tissue before the vessels, decoys and nerve are painted in.

    Args:
        echo: ``[Hc, Wc]`` float32 echo strength on the canvas.
        texture: ``[Hc, Wc]`` float32 smooth unit-variance field that modulates it (reused by the bright decoys).
        level_deep: echo level of deep tissue, the reference of every structure's brightness.
    """

    echo: np.ndarray
    texture: np.ndarray
    level_deep: float


def draw_tissue(rng: np.random.Generator, geometry: CanvasGeometry) -> Tissue:
    """Draw a subject's layered tissue (canvas row = frame row + ``my`` at zero drift)."""
    g = geometry
    hc, wc, my, h, sy, s = g.hc, g.wc, g.my, g.h, g.sy, g.s
    level_deep = rng.uniform(0.32, 0.45)
    level_sub = level_deep * rng.uniform(0.6, 0.85)
    level_muscle = level_deep * rng.uniform(0.75, 1.0)
    y_skin = wavy_curve(rng, wc, my + rng.uniform(0.03, 0.06) * h, 3.0 * sy)
    y_f1 = wavy_curve(rng, wc, my + rng.uniform(0.12, 0.19) * h, 6.0 * sy)
    y_f2 = wavy_curve(rng, wc, my + rng.uniform(0.26, 0.36) * h, 8.0 * sy)
    y_f3 = wavy_curve(rng, wc, my + rng.uniform(0.74, 0.88) * h, 10.0 * sy)

    texture = smooth_field(rng, (hc, wc), 40.0 * s)
    tissue = level_deep * (1.0 + 0.22 * texture + 0.1 * smooth_field(rng, (hc, wc), 12.0 * s))
    muscle, septa = _muscle_and_septa(rng, g, level_sub, level_muscle)
    tissue = _layered(rng, g, tissue, muscle, septa, (y_skin, y_f1, y_f2, y_f3))
    _add_fascia(rng, g, tissue, texture, (y_skin, y_f1, y_f2, y_f3))
    if rng.random() < 0.35:
        _add_bone_shadow(rng, g, tissue)
    return Tissue(tissue.astype(_F32), texture, level_deep)


def _below(rows: np.ndarray, curve: np.ndarray, s: float) -> np.ndarray:
    """Soft indicator (0 above, 1 below) of the canvas below the curve ``y(x)``."""
    return special.expit((rows - curve[None, :]) / _F32(max(1.0, 2.0 * s)))


def _muscle_and_septa(
    rng: np.random.Generator, geometry: CanvasGeometry, level_sub: float, level_muscle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Striation: short, horizontally elongated hyperechoic streaks (perimysium) over mid-gray muscle; the
    subcutaneous septa reuse the streaks mirrored.

    Returns:
        ``(muscle, septa)``, ``[Hc, Wc]`` echo levels.
    """
    hc, wc, s = geometry.hc, geometry.wc, geometry.s
    streak_sigma = (max(0.5, rng.uniform(0.9, 1.4) * s), max(1.0, rng.uniform(6.0, 12.0) * s))
    streak_noise = filtered_noise(rng, (hc, wc), streak_sigma)
    striation = np.clip(streak_noise - 0.3, 0.0, None) ** 1.2
    fibre_mod = 0.6 + 0.4 * smooth_field(rng, (hc, wc), 15.0 * s)
    muscle = level_muscle * (0.7 + 0.6 * striation * fibre_mod)
    septa = level_sub * (0.9 + 0.6 * striation[::-1, ::-1] * (fibre_mod > 0.85))
    return muscle, septa


def _layered(
    rng: np.random.Generator,
    geometry: CanvasGeometry,
    tissue: np.ndarray,
    muscle: np.ndarray,
    septa: np.ndarray,
    curves: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Blend the layers between the boundaries (skin, fascia 1-3): fat with septa, muscle, deep muscle (in most
    subjects) over the deep tissue, and the bright gel/skin band above the skin line."""
    y_skin, y_f1, y_f2, y_f3 = curves
    rows, s = geometry.rows(), geometry.s
    in_sub = _below(rows, y_skin, s) * (1.0 - _below(rows, y_f1, s))
    in_muscle = _below(rows, y_f1, s) * (1.0 - _below(rows, y_f2, s))
    in_deep_muscle = _below(rows, y_f3, s) if rng.random() < 0.7 else np.zeros_like(in_sub)
    tissue = (
        tissue * (1.0 - in_sub - in_muscle - in_deep_muscle) + septa * in_sub + muscle * (in_muscle + in_deep_muscle)
    )
    return tissue * _below(rows, y_skin, s) + _F32(0.65) * (1.0 - _below(rows, y_skin, s))


def _add_fascia(
    rng: np.random.Generator,
    geometry: CanvasGeometry,
    tissue: np.ndarray,
    texture: np.ndarray,
    curves: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Add the bright lines of the skin and the three fascia to ``tissue`` in place."""
    y_skin, y_f1, y_f2, y_f3 = curves
    rows, s = geometry.rows(), geometry.s
    for curve, amplitude, thickness in (
        (y_skin, 0.7, 2.5),
        (y_f1, rng.uniform(0.5, 0.9), rng.uniform(1.5, 3.0)),
        (y_f2, rng.uniform(0.6, 1.0), rng.uniform(1.5, 3.5)),
        (y_f3, rng.uniform(0.4, 0.8), rng.uniform(1.5, 3.0)),
    ):
        line = np.exp(-(((rows - curve[None, :]) / _F32(max(0.7, thickness * s))) ** 2))
        tissue += _F32(amplitude) * line * (0.75 + 0.25 * texture)


def _add_bone_shadow(rng: np.random.Generator, geometry: CanvasGeometry, tissue: np.ndarray) -> None:
    """Add a bright deep arc (bone or pleura) over part of the width, darkening everything below it, in place."""
    g = geometry
    rows, columns, wc, s = g.rows(), g.columns(), g.wc, g.s
    x0, x1 = sorted(rng.uniform(0.0, 1.0, 2) * wc)
    x1 = max(x1, x0 + 0.3 * wc)
    y_bone = wavy_curve(rng, wc, g.my + rng.uniform(0.86, 0.95) * g.h, 6.0 * g.sy)
    lateral = special.expit((columns - x0) / _F32(4.0 * s)) * special.expit((x1 - columns) / _F32(4.0 * s))
    tissue *= 1.0 - 0.85 * _below(rows, y_bone, s) * lateral
    tissue += _F32(1.2) * np.exp(-(((rows - y_bone[None, :]) / _F32(max(0.8, 2.5 * s))) ** 2)) * lateral
