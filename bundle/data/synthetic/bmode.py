"""B-mode image formation: two-look compounded speckle (complex Gaussian fields smoothed anisotropically, grains
elongated horizontally), depth attenuation, lateral gain fall-off and log compression into 8-bit pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nerveseg.bundle.data.synthetic.canvas import CanvasGeometry
from nerveseg.bundle.data.synthetic.noise_fields import filtered_noise

__all__ = ["Scanner", "Speckle", "draw_scanner", "draw_speckle"]

_F32 = np.float32


@dataclass(frozen=True)
class Speckle:
    """A subject's speckle: per look a fixed base complex field plus a slowly rotating mix of two innovation fields,
    so that every frame's speckle keeps the correlation ``keep`` with the subject's base speckle.

    Args:
        looks: two looks, each six ``[Hc, Wc]`` float32 canvas fields: (re, im) x (base, change 1, change 2).
        keep: correlation of every frame's speckle with the base speckle.
        angles: per-frame angle of the innovation mix, radians (a random walk).
    """

    looks: list[list[np.ndarray]]
    keep: float
    angles: np.ndarray

    def intensity(self, t: int, oy: float, ox: float, h: int, w: int) -> np.ndarray:
        """Compounded speckle intensity ``[h, w]`` of frame ``t`` whose canvas window starts at ``(oy, ox)``."""
        angle = float(self.angles[t])
        iy, ix = round(oy), round(ox)
        window = (slice(iy, iy + h), slice(ix, ix + w))
        mix = math.sqrt(1.0 - self.keep**2)
        weights = (_F32(self.keep), _F32(mix * math.cos(angle)), _F32(mix * math.sin(angle)))
        intensity = np.zeros((h, w), dtype=_F32)
        for fields in self.looks:
            re = weights[0] * fields[0][window] + weights[1] * fields[2][window] + weights[2] * fields[4][window]
            im = weights[0] * fields[1][window] + weights[1] * fields[3][window] + weights[2] * fields[5][window]
            intensity += re * re + im * im
        return intensity


@dataclass(frozen=True)
class Scanner:
    """A subject's scanner settings.

    Args:
        attenuation: ``[H, 1]`` float32 depth attenuation.
        lateral_gain: ``[1, W]`` float32 gain fall-off towards the sides.
        gamma: compression exponent of the echo.
        speckle_power: exponent of the speckle intensity (below ``gamma / 2`` softens the speckle).
        gain: overall gain.
    """

    attenuation: np.ndarray
    lateral_gain: np.ndarray
    gamma: float
    speckle_power: np.float32
    gain: float

    def image(self, echo: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        """The ``[H, W]`` uint8 B-mode image of a frame's ``echo`` strength and speckle ``intensity``."""
        speckle = np.power(intensity * _F32(0.25), self.speckle_power)  # mean-one intensity, log-compressed
        echo = np.power(np.maximum(echo, 0.0) * self.attenuation * self.lateral_gain, _F32(self.gamma))
        speckle_mean = math.gamma(2.0 + self.speckle_power) / math.gamma(2.0) / 2.0**self.speckle_power  # Gamma(2, 1/2)
        image = np.clip(_F32(255.0 * self.gain / speckle_mean) * echo * speckle + 0.5, 0.0, 255.0)
        return image.astype(np.uint8)


def draw_speckle(rng: np.random.Generator, geometry: CanvasGeometry, num_frames: int) -> Speckle:
    """Draw a subject's speckle fields and the per-frame rotation of their innovation."""
    sigma = (max(0.45, 1.1 * geometry.s), max(0.6, 3.2 * geometry.s))
    looks = [[filtered_noise(rng, (geometry.hc, geometry.wc), sigma) for _ in range(6)] for _ in range(2)]
    keep = rng.uniform(0.9, 0.97)
    return Speckle(looks, keep, np.cumsum(rng.normal(0.0, 0.35, num_frames)))


def draw_scanner(rng: np.random.Generator, geometry: CanvasGeometry, level_deep: float) -> Scanner:
    """Draw a subject's scanner settings; the gain maps tissue of ``level_deep`` at mid-depth to about 42% of white."""
    h, w = geometry.h, geometry.w
    absorption = rng.uniform(0.8, 1.6)
    attenuation = np.exp(-absorption * np.arange(h, dtype=_F32) / _F32(h))[:, None].astype(_F32)
    lateral_gain = (1.0 - 0.12 * ((np.arange(w, dtype=_F32) - w / 2) / (w / 2)) ** 4)[None, :].astype(_F32)
    gamma = rng.uniform(0.6, 0.8)
    speckle_power = _F32(gamma * rng.uniform(0.6, 0.75) / 2.0)
    gain = rng.uniform(0.85, 1.15) * 0.42 / (level_deep * math.exp(-absorption * 0.5)) ** gamma
    return Scanner(attenuation, lateral_gain, gamma, speckle_power, gain)
