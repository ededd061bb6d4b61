"""The frames ``nerveseg live`` reads and writes: a folder of images, a video file, or a live stream.

Videos and streams go through PyAV (the ``live`` extra), whose FFmpeg opens files, stream addresses (``rtsp://``,
``udp://``, ``srt://``, ``http://``) and, given their FFmpeg input format, capture devices (``v4l2``, ``avfoundation``,
``dshow``, ``x11grab``) and generated test sources (``lavfi``). A live source is read on its own thread that keeps
only the newest frame, so a segmenter slower than the probe skips frames instead of falling further behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path

__all__ = ["FRAME_SUFFIXES", "Frame", "FrameSource", "frame_writer"]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""The image files a folder of frames is read from, in name order."""

CAPTURE_FORMATS = ("v4l2", "avfoundation", "dshow", "x11grab", "lavfi")
"""FFmpeg's input formats for capture devices and generated sources, named when one cannot be opened."""

DEFAULT_RATE = 25.0
"""Frames per second where a video or stream does not say."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position in the source, a name for the files written of it, and its pixels."""

    index: int
    name: str
    pixels: np.ndarray
    """``[H, W]`` uint8 grayscale."""
    skipped: int = 0
    """Frames a live source gave since the previous frame read and that were never read."""


class FrameSource:
    """The frames of a folder of images, a video file, or a live stream (an address or a capture device), in order.

    Args:
        source: a folder, a video file, a stream address (``rtsp://...``), or a device for ``input_format``.
        input_format: FFmpeg's input format of a capture device (``v4l2``, ``avfoundation``, ``dshow``,
            ``x11grab``) or generated source (``lavfi``); ``None`` for files, folders and stream addresses.
        input_options: FFmpeg's options for the input, e.g. ``{"video_size": "640x480", "framerate": "30"}``.

    Raises:
        UserInputError: a file or folder that does not exist.
    """

    def __init__(
        self, source: str, input_format: str | None = None, input_options: Mapping[str, str] | None = None
    ) -> None:
        self.source = source
        self.input_format = input_format
        self.input_options = {str(key): str(value) for key, value in (input_options or {}).items()}
        self.live = input_format is not None or "://" in source
        if not self.live and not Path(source).exists():
            raise UserInputError(
                f"source {source} does not exist; give a video file, a folder of frames, a stream address "
                "(rtsp://...) or a capture device with its --input_format (e.g. /dev/video0 with v4l2)."
            )
        self.folder = not self.live and Path(source).is_dir()
        self.rate = DEFAULT_RATE
        """The source's frames per second, known once its first frame is read (25 for a folder)."""

    @property
    def name(self) -> str:
        """The name of the video written of this source: the file's, ``live`` for a stream or device."""
        return "live" if self.live else Path(self.source).stem

    def __iter__(self) -> Iterator[Frame]:
        if self.folder:
            paths = sorted(p for p in Path(self.source).iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            for index, path in enumerate(paths):
                with Image.open(path) as image:
                    yield Frame(index, path.stem, np.asarray(image.convert("L")))
        elif self.live:
            yield from _newest_only(self._decoded())
        else:
            yield from self._decoded()

    def _decoded(self) -> Iterator[Frame]:
        av = pyav(self.source)
        try:
            container = av.open(self.source, format=self.input_format, options=self.input_options)
        except (av.error.FFmpegError, ValueError) as error:
            raise UserInputError(self._cannot_open(av, error)) from error
        with container:
            stream = container.streams.video[0]
            self.rate = float(stream.average_rate) if stream.average_rate else DEFAULT_RATE
            for index, frame in enumerate(container.decode(stream)):
                yield Frame(index, f"{index:06d}", frame.to_ndarray(format="gray"))

    def _cannot_open(self, av: Any, error: Exception) -> str:
        opened = f"as {self.input_format} " if self.input_format else ""
        message = f"{self.source}: FFmpeg cannot open it {opened}({error})"
        if self.input_format and self.input_format not in av.formats_available:
            here = [name for name in CAPTURE_FORMATS if name in av.formats_available]
            return (
                f"{message}; this PyAV's FFmpeg has no {self.input_format} input (it has {', '.join(here)}): "
                "install a PyAV built on an FFmpeg with that device, or stream the device to an address "
                "(rtsp://, udp://) and give the address."
            )
        return f"{message}; check the address or device name and --input_options."


def _newest_only(frames: Iterator[Frame]) -> Iterator[Frame]:
    """``frames`` decoded on their own thread as fast as they come; each step yields the newest one, with the number
    of frames that came since the previous step and were never yielded."""
    condition, stop = threading.Condition(), threading.Event()
    state: dict[str, Any] = {"newest": None, "skipped": 0, "done": False, "error": None}

    def read() -> None:
        try:
            for frame in frames:
                with condition:
                    state["skipped"] += state["newest"] is not None
                    state["newest"] = frame
                    condition.notify()
                if stop.is_set():
                    break
        except BaseException as error:  # handed to the reading thread, which raises it
            state["error"] = error
        finally:
            frames.close()
            with condition:
                state["done"] = True
                condition.notify()

    reader = threading.Thread(target=read, name="nerveseg-live-reader", daemon=True)
    reader.start()
    try:
        while True:
            with condition:
                condition.wait_for(lambda: state["newest"] is not None or state["done"])
                frame, skipped = state["newest"], state["skipped"]
                state["newest"], state["skipped"] = None, 0
            if frame is None:
                if state["error"] is not None:
                    raise state["error"]
                return
            yield Frame(frame.index, frame.name, frame.pixels, skipped)
    finally:
        stop.set()
        reader.join(timeout=5.0)  # a stream that sends nothing more keeps its daemon thread blocked; let it go


@contextmanager
def frame_writer(source: FrameSource, folder: Path) -> Iterator[Callable[[Frame, np.ndarray], None]]:
    """``write(frame, rgb)`` of the outlined frames: PNG files for a folder of frames; otherwise one MPEG-4 video at
    the source's rate, each frame at its own time (a skipped frame holds the one before), an odd last row or column
    cropped, written under a temporary name and renamed when the block ends."""
    if source.folder:
        yield lambda frame, rgb: Image.fromarray(rgb).save(folder / f"{frame.name}.png")
        return
    av = pyav(source.source)
    with atomic_path(folder / f"{source.name}.mp4") as partial:
        container, streams = av.open(str(partial), "w"), []

        def write(frame: Frame, rgb: np.ndarray) -> None:
            if not streams:
                stream = container.add_stream("mpeg4", rate=max(1, round(source.rate)))
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2, "yuv420p"
                streams.append(stream)
            stream = streams[0]
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: stream.height, : stream.width]), "rgb24")
            picture.pts = frame.index
            container.mux(stream.encode(picture))

        try:
            yield write
            for stream in streams:
                container.mux(stream.encode())  # the frames the encoder still holds
        finally:
            container.close()


def pyav(source: str) -> Any:
    """PyAV's ``av`` module, or the error that says how to install it."""
    try:
        import av
    except ImportError as error:
        raise UserInputError(
            f"{source}: videos and streams are read and written with PyAV, which is not installed: "
            "pip install -e '.[live]' (or give a folder of frame images)."
        ) from error
    return av
