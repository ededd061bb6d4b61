"""``nerveseg live``: segment a video, a folder of frames, or a live stream one frame at a time, as a probe gives them.

Frames are decoded (:mod:`~nerveseg.scripts.video_frames`), converted to grayscale and segmented by
:class:`~nerveseg.bundle.inference.streaming.StreamingSegmenter`; each is written back with the structure's outline
drawn in red, and its latency, from decoded frame to mask, goes to ``latency.csv``. The first frame, which converts
and compiles the network, is reported apart from the others' median and 99th percentile. Ctrl-C, or a source that
breaks after its first frames, ends the run as the end of the source would: what was segmented is written.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from nerveseg.bundle.inference.streaming import StreamingSegmenter
from nerveseg.scripts.bench.machine import describe_machine
from nerveseg.scripts.video_frames import FRAME_SUFFIXES, Frame, FrameSource, frame_writer
from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path, write_json_atomically

__all__ = ["latency_summary", "live", "outlined"]

OUTLINE_RGB = (255, 0, 0)


def live(
    source: str,
    out: str,
    bundle_root: str = ".",
    checkpoint: str | None = None,
    configs: Sequence[str] = ("configs/inference.json",),
    smoothing: float = 0.0,
    overrides: Mapping[str, Any] | None = None,
    input_format: str | None = None,
    input_options: Mapping[str, str] | None = None,
    max_frames: int | None = None,
    view: str | None = None,
) -> dict[str, Any]:
    """Segment the frames of ``source`` in order; write the outlined frames, ``latency.csv`` and ``live.json``.

    Args:
        source: a video file (any format FFmpeg reads, through PyAV), a folder of frame images, a stream address
            (``rtsp://``, ``udp://``, ``srt://``, ``http://``) or a capture device of ``input_format``.
        out: the folder to write: the outlined video (``{name}.mp4``, ``live.mp4`` for a stream or device; MPEG-4,
            an odd last row or column cropped) or frames (``{name}.png``), ``latency.csv`` (frame, milliseconds,
            mask pixels, frames skipped before it) and ``live.json`` (the summary printed at the end).
        bundle_root: the bundle folder holding ``configs/``.
        checkpoint: the weights; ``None`` is ``models/model.pt`` under ``bundle_root``.
        configs: the config stack, inference.json first, then override files.
        smoothing: the weight of earlier frames' probabilities (0: each frame alone).
        overrides: config ids and values, e.g. ``{"inference_backend": "torch"}``.
        input_format: FFmpeg's input format of a capture device (``v4l2``, ``avfoundation``, ``dshow``,
            ``x11grab``) or a generated source (``lavfi``). A stream or device is read on its own thread and each
            step segments its newest frame: frames that came while the network ran are skipped, not queued.
        input_options: FFmpeg's options for the input, e.g. ``{"video_size": "640x480", "framerate": "30"}``.
        max_frames: stop after this many frames segmented; ``None`` runs to the end of the source (or Ctrl-C).
        view: where to send the outlined frames as they are made, MPEG-TS for a player to show live: an address
            (``udp://127.0.0.1:5001?pkt_size=1316``, watched with ``ffplay udp://127.0.0.1:5001`` or VLC) or a
            file; a view that fails after its first frame is dropped with a warning.

    Returns:
        the summary: what ran the network (``path``, e.g. ``"openvino bfloat16"``), frames, frames skipped, the
        first frame's milliseconds, p50 and p99 of the others, frames per second, and how the run ended (the end of
        the source, ``max_frames``, Ctrl-C, or the source's error).

    Raises:
        UserInputError: a missing source, a folder without frames, a stream or device FFmpeg cannot open or that
            sends nothing, a ``view`` FFmpeg cannot write to, a video without PyAV installed, or ``max_frames``
            below 1.
    """
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise UserInputError(f"max_frames is {max_frames!r}: give a whole number >= 1, or leave it out for all frames.")
    frames, folder = FrameSource(source, input_format, input_options), Path(out)
    segmenter = StreamingSegmenter.from_bundle(bundle_root, checkpoint, configs, smoothing, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    rows, ended = [], "end of source"
    with frame_writer(frames, folder, view) as write, closing(iter(frames)) as decoded:
        try:
            for frame in _source_errors_apart(islice(decoded, max_frames)):
                start = time.perf_counter()
                mask = segmenter(frame.pixels)
                milliseconds = 1e3 * (time.perf_counter() - start)
                write(frame, outlined(frame.pixels, mask))
                rows.append(
                    {"frame": frame.name, "ms": round(milliseconds, 3), "mask_pixels": int(mask.sum()),
                     "skipped": frame.skipped}
                )  # fmt: skip
        except KeyboardInterrupt:
            if not rows:
                raise
            ended = "Ctrl-C"
        except _SourceError as error:
            if not rows:
                raise error.__cause__ from None
            ended = f"source error ({error})"
        if ended == "end of source" and len(rows) == max_frames:
            ended = f"max_frames {max_frames}"
        if not rows:  # inside: an empty video is not written
            wanted = (
                "check that the stream is being sent"
                if frames.live
                else f"a folder needs {', '.join(FRAME_SUFFIXES)} files"
            )
            raise UserInputError(f"{source} gave no frames; {wanted}.")
    with atomic_path(folder / "latency.csv") as partial, open(partial, "w", newline="") as f:
        table = csv.DictWriter(f, fieldnames=list(rows[0]))
        table.writeheader()
        table.writerows(rows)
    summary = {
        "source": source,
        "size": list(segmenter.image_size),
        "backend": segmenter.backend,
        "path": segmenter.execution_path,
        **latency_summary(rows),
        "skipped": sum(row["skipped"] for row in rows),
        "ended": ended,
        "machine": describe_machine(),
    }
    write_json_atomically(folder / "live.json", summary)
    skipped = f", {summary['skipped']} skipped while the network ran" if frames.live else ""
    print(
        f"{summary['frames']} frames{skipped} at {'x'.join(map(str, summary['size']))}, until {ended}: first "
        f"{summary['first_ms']:.0f} ms (conversion and compilation), then p50 {summary['p50_ms']:.1f} ms, p99 "
        f"{summary['p99_ms']:.1f} ms, {summary['frames_per_second']:.1f} frames per second ({summary['path']}; "
        f"{summary['machine']['summary']}). Written to {folder}."
    )
    return summary


class _SourceError(Exception):
    """An error of the source, set apart from the segmenter's: after the first frames, the run ends and keeps them."""


def _source_errors_apart(frames: Iterator[Frame]) -> Iterator[Frame]:
    """``frames``, with an error of the source (a broken stream, a damaged video) raised as :class:`_SourceError`."""
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except UserInputError:
            raise
        except Exception as error:
            raise _SourceError(f"{type(error).__name__}: {error}") from error
        yield frame


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
