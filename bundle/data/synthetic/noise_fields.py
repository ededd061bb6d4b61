"""Random fields and curves of the synthetic generator: smooth noise fields, smooth time series, wavy layer
boundaries and anisotropically smoothed white noise (speckle grains, muscle streaks)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["filtered_noise", "smooth_field", "smooth_series", "wavy_curve"]

_F32 = np.float32


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A smooth zero-mean, unit-variance random field with correlation length about ``scale`` px."""
    coarse = (max(math.ceil(shape[0] / max(scale, 1.0)) + 3, 4), max(math.ceil(shape[1] / max(scale, 1.0)) + 3, 4))
    small = rng.standard_normal(coarse)
    out = ndimage.zoom(small, (shape[0] / coarse[0], shape[1] / coarse[1]), order=3, mode="nearest", grid_mode=True)
    out = out[: shape[0], : shape[1]]
    return ((out - out.mean()) / (out.std() + 1e-12)).astype(_F32)


def smooth_series(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """A smooth zero-mean random sequence of length ``n`` with unit variance (Gaussian-filtered white noise)."""
    pad = math.ceil(3 * sigma) + 1
    raw = ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma, mode="wrap")[pad : pad + n]
    return raw * math.sqrt(2.0 * math.sqrt(math.pi) * sigma)


def wavy_curve(rng: np.random.Generator, width: int, base: float, amplitude: float) -> np.ndarray:
    """A wavy horizontal curve ``y(x)`` (px) of length ``width``: a slow sine plus smooth noise plus a slight tilt."""
    x = np.arange(width, dtype=np.float64)
    period = rng.uniform(0.7, 2.0) * width
    sine = np.sin(2.0 * math.pi * x / period + rng.uniform(0, 2 * math.pi))
    noise = ndimage.zoom(rng.standard_normal(8), width / 8, order=3, mode="nearest", grid_mode=True)[:width]
    tilt = rng.uniform(-0.6, 0.6) * (x / width - 0.5)
    return (base + amplitude * (sine + 0.5 * noise + tilt)).astype(_F32)


def filtered_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Float32 white noise smoothed by a Gaussian of per-axis ``sigma`` (px, wrapped borders), scaled to unit variance.

    A horizontal ``sigma`` larger than the vertical one gives grains elongated horizontally, as in B-mode speckle.
    """
    raw = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=_F32), sigma, mode="wrap")
    return raw / raw.std()
