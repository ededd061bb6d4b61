"""``nerveseg live``: segment a video, or a folder of frames, one frame at a time as a live probe would give them.

Frames are decoded (PyAV for videos, the ``live`` extra; Pillow for image files), converted to grayscale and
segmented by :class:`~nerveseg.bundle.inference.streaming.StreamingSegmenter`; each is written back with the
structure's outline drawn in red, and its latency, from decoded frame to mask, goes to ``latency.csv``. The first
frame, which converts and compiles the network, is reported apart from the others' median and 99th percentile.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nerveseg.bundle.inference.streaming import StreamingSegmenter
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path, write_json_atomically

__all__ = ["FRAME_SUFFIXES", "latency_summary", "live", "outlined"]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""The image files a folder of frames is read from, in name order."""

OUTLINE_RGB = (255, 0, 0)


def live(
    source: str,
    out: str,
    bundle_root: str = ".",
    checkpoint: str | None = None,
    configs: Sequence[str] = ("configs/inference.json",),
    smoothing: float = 0.0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment every frame of ``source`` in order; write the outlined frames, ``latency.csv`` and ``live.json``.

    Args:
        source: a video file (any format FFmpeg reads, through PyAV) or a folder of frame images.
        out: the folder to write: the outlined video (``{name}.mp4``, MPEG-4, an odd last row or column cropped)
            or frames (``{name}.png``), ``latency.csv`` (frame, milliseconds, mask pixels) and ``live.json`` (the
            summary printed at the end).
        bundle_root: the bundle folder holding ``configs/``.
        checkpoint: the weights; ``None`` is ``models/model.pt`` under ``bundle_root``.
        configs: the config stack, inference.json first, then override files.
        smoothing: the weight of earlier frames' probabilities (0: each frame alone).
        overrides: config ids and values, e.g. ``{"inference_backend": "torch"}``.

    Returns:
        the summary: frames, the first frame's milliseconds, p50 and p99 of the others, frames per second.

    Raises:
        UserInputError: a missing source, a folder without frames, or a video without PyAV installed.
    """
    source_path, folder = Path(source), Path(out)
    if not source_path.exists():
        raise UserInputError(f"source {source_path} does not exist; give a video file or a folder of frames.")
    segmenter = StreamingSegmenter.from_bundle(bundle_root, checkpoint, configs, smoothing, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with _frame_writer(source_path, folder) as write:
        for name, frame, rate in _frames(source_path):
            start = time.perf_counter()
            mask = segmenter(frame)
            milliseconds = 1e3 * (time.perf_counter() - start)
            write(name, outlined(frame, mask), rate)
            rows.append({"frame": name, "ms": round(milliseconds, 3), "mask_pixels": int(mask.sum())})
        if not rows:  # inside: an empty video is not written
            raise UserInputError(f"{source_path} holds no frames; a folder needs {', '.join(FRAME_SUFFIXES)} files.")
    with atomic_path(folder / "latency.csv") as partial, open(partial, "w", newline="") as f:
        table = csv.DictWriter(f, fieldnames=list(rows[0]))
        table.writeheader()
        table.writerows(rows)
    summary = {
        "source": str(source_path),
        "size": list(segmenter.image_size),
        "backend": segmenter.backend,
        **latency_summary(rows),
        "machine": describe_machine(),
    }
    write_json_atomically(folder / "live.json", summary)
    print(
        f"{summary['frames']} frames at {'x'.join(map(str, summary['size']))}: first {summary['first_ms']:.0f} ms "
        f"(conversion and compilation), then p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, "
        f"{summary['frames_per_second']:.1f} frames per second ({summary['backend']}; "
        f"{summary['machine']['summary']}). Written to {folder}."
    )
    return summary


def latency_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Frames, the first frame's ms, and the median, 99th percentile and frames per second of the rest."""
    times = [row["ms"] for row in rows]
    rest = times[1:] or times
    return {
        "frames": len(times),
        "first_ms": times[0],
        "p50_ms": statistics.median(rest),
        "p99_ms": float(np.percentile(rest, 99)),
        "frames_per_second": 1e3 / statistics.mean(rest),
    }


def outlined(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of a grayscale ``frame`` with the boundary pixels of ``mask`` in red."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    rgb = np.repeat(np.asarray(frame, dtype=np.uint8)[..., None], 3, axis=2)
    rgb[mask & ~inner] = OUTLINE_RGB
    return rgb


def _frames(source: Path) -> Iterator[tuple[str, np.ndarray, float | None]]:
    """``(name, [H, W] uint8 frame, frames per second or None)`` of a folder or a video, in order."""
    if source.is_dir():
        for path in sorted(p for p in source.iterdir() if p.suffix.lower() in FRAME_SUFFIXES):
            with Image.open(path) as image:
                yield path.stem, np.asarray(image.convert("L")), None
        return
    av = _pyav(source)
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        for index, frame in enumerate(container.decode(stream)):
            yield f"{index:06d}", frame.to_ndarray(format="gray"), rate


@contextmanager
def _frame_writer(source: Path, folder: Path) -> Iterator[Callable[[str, np.ndarray, float | None], None]]:
    """``write(name, rgb, frames_per_second)`` of the outlined frames: PNG files for a folder of frames; for a video,
    one MPEG-4 video (an odd last row or column cropped), written under a temporary name and renamed at the end."""
    if source.is_dir():
        yield lambda name, rgb, rate: Image.fromarray(rgb).save(folder / f"{name}.png")
        return
    av = _pyav(source)
    with atomic_path(folder / f"{source.stem}.mp4") as partial:
        container, streams = av.open(str(partial), "w"), []

        def write(name: str, rgb: np.ndarray, rate: float | None) -> None:
            if not streams:
                stream = container.add_stream("mpeg4", rate=round(rate or 25))
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2, "yuv420p"
                streams.append(stream)
            stream = streams[0]
            even = np.ascontiguousarray(rgb[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))

        try:
            yield write
            for stream in streams:
                container.mux(stream.encode())  # the frames the encoder still holds
        finally:
            container.close()


def _pyav(path: Path) -> Any:
    try:
        import av
    except ImportError as error:
        raise UserInputError(
            f"{path}: videos are read and written with PyAV, which is not installed: pip install -e '.[live]' "
            "(or give a folder of frame images)."
        ) from error
    return av
