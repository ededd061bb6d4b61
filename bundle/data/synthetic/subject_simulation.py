"""One simulated subject: its anatomy drawn once, then consecutive frames rendered from it as the probe drifts, the
nerve jitters, appears and fades, and the speckle slowly changes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nerveseg.bundle.data.synthetic.blobs import paint_blobs, place_blobs
from nerveseg.bundle.data.synthetic.bmode import Scanner, Speckle, draw_scanner, draw_speckle
from nerveseg.bundle.data.synthetic.canvas import CanvasGeometry, bilinear_crop, draw_probe_drift
from nerveseg.bundle.data.synthetic.nerve import (
    NerveInterior,
    NerveOutlines,
    draw_nerve_interior,
    draw_nerve_outlines,
    frame_nerve_area,
    paint_nerve,
    paint_slot_decoy,
)
from nerveseg.bundle.data.synthetic.noise_fields import smooth_series
from nerveseg.bundle.data.synthetic.subject_sampling import draw_presence, run_edges, sequence_quantiles
from nerveseg.bundle.data.synthetic.tissue_layers import draw_tissue

__all__ = ["SimulatedSubject", "simulate_subject"]


@dataclass
class SimulatedSubject:
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


@dataclass(frozen=True)
class _FrameJitter:
    """Per-frame variation of the nerve: relative size and contrast, and its shift (px) against the anatomy."""

    size: np.ndarray
    contrast: np.ndarray
    shift_y: np.ndarray
    shift_x: np.ndarray


@dataclass(frozen=True)
class _Scene:
    """Everything drawn once per subject that its frames are rendered from."""

    geometry: CanvasGeometry
    presence: np.ndarray
    run_edge: np.ndarray
    drift_y: np.ndarray
    drift_x: np.ndarray
    canvas: np.ndarray
    level_deep: float
    nerve_centre: tuple[float, float]
    outlines: NerveOutlines
    interior: NerveInterior
    speckle: Speckle
    jitter: _FrameJitter
    scanner: Scanner


def simulate_subject(
    seed: int, stream: int, index: int, num_frames: int, shape: tuple[int, int], with_duplicate: bool = True
) -> SimulatedSubject:
    """Simulate ``num_frames`` consecutive frames of one subject.

    Args:
        seed: dataset seed.
        stream: ``STREAM_TRAIN`` or ``STREAM_TEST`` (:mod:`~nerveseg.bundle.data.synthetic.subject_sampling`).
        index: subject index within the stream, >= 1.
        num_frames: number of frames, >= 2.
        shape: ``(H, W)`` of the frames.
        with_duplicate: allow a conflicting duplicate pair (train subjects only).

    Returns:
        The subject's images, masks and duplicate pair.
    """
    rng = np.random.default_rng([seed, stream, index])
    u_rate, u_duplicate, u_size = sequence_quantiles(seed, stream, index)
    rate, presence, duplicate = draw_presence(rng, num_frames, u_rate, u_duplicate, with_duplicate)
    scene = _draw_scene(rng, CanvasGeometry.for_shape(shape), presence, u_size)
    subject = SimulatedSubject(duplicate=duplicate, rate_target=rate)
    for t in range(num_frames):
        image, mask = _render_frame(scene, t)
        subject.images.append(image)
        subject.masks.append(mask)
    if duplicate is not None:
        positive, negative = duplicate
        subject.images[negative] = subject.images[positive].copy()
    return subject


def _draw_scene(rng: np.random.Generator, geometry: CanvasGeometry, presence: np.ndarray, u_size: float) -> _Scene:
    """Draw a subject's anatomy, motion, speckle and scanner, in the order of its random stream."""
    num_frames = len(presence)
    drift_y, drift_x = draw_probe_drift(rng, geometry, num_frames)
    tissue = draw_tissue(rng, geometry)
    outlines = draw_nerve_outlines(rng, geometry.area_scale, u_size)
    nerve_centre, blobs = place_blobs(rng, geometry, outlines.area, outlines.placement_radius)
    canvas = paint_blobs(rng, geometry, tissue, blobs)
    interior = draw_nerve_interior(rng, outlines)
    speckle = draw_speckle(rng, geometry, num_frames)
    jitter = _draw_frame_jitter(rng, geometry, num_frames)
    scanner = draw_scanner(rng, geometry, tissue.level_deep)
    return _Scene(
        geometry=geometry,
        presence=presence,
        run_edge=run_edges(presence),
        drift_y=drift_y,
        drift_x=drift_x,
        canvas=canvas,
        level_deep=tissue.level_deep,
        nerve_centre=nerve_centre,
        outlines=outlines,
        interior=interior,
        speckle=speckle,
        jitter=jitter,
        scanner=scanner,
    )


def _draw_frame_jitter(rng: np.random.Generator, geometry: CanvasGeometry, num_frames: int) -> _FrameJitter:
    """Smooth per-frame variation of the nerve: size (SD 5%), contrast (SD 8%), shift (SD 1.2-1.5 px at 420 x 580)."""
    s = geometry.s
    size_jitter = 1.0 + 0.05 * smooth_series(rng, num_frames, 2.0)
    contrast_jitter = 1.0 + 0.08 * smooth_series(rng, num_frames, 2.0)
    shift_y = 1.2 * s * smooth_series(rng, num_frames, 3.0)
    shift_x = 1.5 * s * smooth_series(rng, num_frames, 3.0)
    return _FrameJitter(size_jitter, contrast_jitter, shift_y, shift_x)


def _render_frame(scene: _Scene, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` of a subject: its ``[H, W]`` uint8 image and 0/255 mask."""
    g, jitter = scene.geometry, scene.jitter
    h, w = g.h, g.w
    oy, ox = g.my + float(scene.drift_y[t]), g.mx + float(scene.drift_x[t])
    frame = bilinear_crop(scene.canvas, oy, ox, h, w)
    mask = np.zeros((h, w), dtype=np.uint8)
    cy = scene.nerve_centre[0] + g.my - oy + float(jitter.shift_y[t])
    cx = scene.nerve_centre[1] + g.mx - ox + float(jitter.shift_x[t])
    at_run_edge = bool(scene.run_edge[t])
    c = scene.interior.contrast * float(jitter.contrast[t]) * (0.65 if at_run_edge else 1.0)
    if scene.presence[t]:
        area = frame_nerve_area(scene.outlines, float(jitter.size[t]), at_run_edge, g.area_scale)
        paint_nerve(frame, mask, (scene.outlines, scene.interior), (cy, cx), area, c, scene.level_deep, g)
    elif scene.interior.slot_decoy:
        paint_slot_decoy(frame, scene.interior.decoy_outline, (cy, cx), c, scene.level_deep, g.edge)
    image = scene.scanner.image(frame, scene.speckle.intensity(t, oy, ox, h, w))
    return image, mask
