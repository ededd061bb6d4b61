"""The frames ``nerveseg live`` reads and writes: a folder of images, a video file, or a live stream.

Videos and streams go through PyAV (the ``live`` extra), whose FFmpeg opens files, stream addresses (``rtsp://``,
``udp://``, ``srt://``, ``http://``) and, given their FFmpeg input format, capture devices (``v4l2``, ``avfoundation``,
``dshow``, ``x11grab``) and generated test sources (``lavfi``). A live source is read on its own thread that keeps
only the newest frame, so a segmenter slower than the probe skips frames instead of falling further behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nerveseg.utils.errors import UserInputError
from nerveseg.utils.files import atomic_path

__all__ = ["FRAME_SUFFIXES", "Frame", "FrameSource", "frame_writer"]

logger = logging.getLogger(__name__)

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""The image files a folder of frames is read from, in name order."""

CAPTURE_FORMATS = ("v4l2", "avfoundation", "dshow", "x11grab", "lavfi")
"""FFmpeg's input formats for capture devices and generated sources, named when one cannot be opened."""

DEFAULT_RATE = Fraction(25)
"""Frames per second where a video or stream does not say (or says more than :data:`MAX_RATE`)."""

MAX_RATE = 240
"""The highest frame rate taken as the source's; a higher one is taken as misreported."""

MPEG4_MAX_TIME_BASE = 65535
"""The largest denominator of an MPEG-4 video's time base; a frame rate whose numerator is larger is rounded."""

OPEN_TIMEOUT_S, READ_TIMEOUT_S = 10.0, 5.0
"""How long a stream or device may take to send its first frame, and then each next one, before it is given up:
opening fails, reading ends as the end of the source does."""


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
        UserInputError: a file or folder that does not exist, or ``input_options`` that are not a mapping.
    """

    def __init__(
        self, source: str, input_format: str | None = None, input_options: Mapping[str, str] | None = None
    ) -> None:
        if input_options is not None and not isinstance(input_options, Mapping):
            raise UserInputError(
                f"input_options is {input_options!r}, not a mapping of FFmpeg options; quote the keys and values "
                "inside the braces: --input_options \"{'video_size': '640x480', 'framerate': '30'}\"."
            )
        self.source = str(source)
        self.input_format = input_format
        self.input_options = {str(key): str(value) for key, value in (input_options or {}).items()}
        self.live = input_format is not None or "://" in self.source
        if not self.live and not Path(self.source).exists():
            raise UserInputError(
                f"source {source} does not exist; give a video file, a folder of frames, a stream address "
                "(rtsp://...) or a capture device with its --input_format (e.g. /dev/video0 with v4l2)."
            )
        self.folder = not self.live and Path(self.source).is_dir()
        self.rate = DEFAULT_RATE
        """The source's frames per second, known once it is opened (25 for a folder or where it says none)."""

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
            return
        decoded = _newest_only(self._decoded()) if self.live else _none_skipped(self._decoded())
        with closing(decoded):  # a live source's reader stops with the reading
            for index, frame, skipped in decoded:
                yield Frame(index, f"{index:06d}", frame.to_ndarray(format="gray"), skipped)

    def _decoded(self) -> Iterator[tuple[int, Any]]:
        """``(index, av.VideoFrame)`` in order; a live source's end is a frame not sent within the read timeout."""
        av = pyav(self.source)
        timeout = (OPEN_TIMEOUT_S, READ_TIMEOUT_S) if self.live else None
        try:
            container = av.open(self.source, format=self.input_format, options=self.input_options, timeout=timeout)
        except av.error.ExitError as error:
            raise UserInputError(
                f"{self.source}: no frame came within {OPEN_TIMEOUT_S:.0f} s; check that the stream is being sent to "
                "this address (or the device is on) and start nerveseg live again."
            ) from error
        except (av.error.FFmpegError, ValueError) as error:
            raise UserInputError(self._cannot_open(av, error)) from error
        with container:
            if not container.streams.video:
                raise UserInputError(f"{self.source}: has no video stream; give a video, or the address of one.")
            stream = container.streams.video[0]
            rate = stream.guessed_rate or stream.average_rate  # the frame rate, not the mean over gaps
            self.rate = Fraction(rate).limit_denominator(1001) if rate and 0 < rate <= MAX_RATE else DEFAULT_RATE
            try:
                yield from enumerate(container.decode(stream))
            except av.error.ExitError:
                if not self.live:
                    raise
                return  # nothing for READ_TIMEOUT_S: the stream stopped

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


def _none_skipped(items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any, int]]:
    for index, item in items:
        yield index, item, 0


def _newest_only(items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any, int]]:
    """``(index, item, skipped)``: ``items`` read on their own thread as fast as they come; each step gives the newest
    one and how many came since the previous step and were never given."""
    condition, stop = threading.Condition(), threading.Event()
    state: dict[str, Any] = {"newest": None, "skipped": 0, "done": False, "error": None}

    def read() -> None:
        try:
            try:
                for item in items:
                    with condition:
                        state["skipped"] += state["newest"] is not None
                        state["newest"] = item
                        condition.notify()
                    if stop.is_set():
                        break
            finally:
                items.close()
        except BaseException as error:  # raised again in the thread that reads the frames
            state["error"] = error
        finally:
            with condition:
                state["done"] = True
                condition.notify()

    reader = threading.Thread(target=read, name="nerveseg-live-reader", daemon=True)
    reader.start()
    try:
        while True:
            with condition:
                condition.wait_for(lambda: state["newest"] is not None or state["done"])
                item, skipped = state["newest"], state["skipped"]
                state["newest"], state["skipped"] = None, 0
            if item is None:
                if state["error"] is not None:
                    raise state["error"]
                return
            yield (*item, skipped)
    finally:
        stop.set()
        reader.join(timeout=READ_TIMEOUT_S + 1.0)  # the reader stops at its next frame, or its read timeout


@contextmanager
def frame_writer(
    source: FrameSource, folder: Path, view: str | None = None
) -> Iterator[Callable[[Frame, np.ndarray], None]]:
    """``write(frame, rgb)`` of the outlined frames: PNG files for a folder of frames, otherwise one MPEG-4 video
    (renamed into place when the block ends); with ``view``, also MPEG-TS sent there as each frame is made."""
    with ExitStack() as stack:
        encoders: list[_Encoder] = []
        if view is not None:  # first: a view that cannot be opened stops the run before anything is written
            encoders.append(stack.enter_context(_Encoder(source, view, "mpegts", optional=True)))
        if not source.folder:
            video = folder / f"{source.name}.mp4"
            partial = stack.enter_context(atomic_path(video))
            encoders.append(stack.enter_context(_Encoder(source, str(partial), name=str(video))))

        def write(frame: Frame, rgb: np.ndarray) -> None:
            if encoders:
                picture = _picture(encoders[0].av, frame, rgb)  # converted once for the view and the video
                for encoder in encoders:
                    encoder.write(picture)
            if source.folder:
                Image.fromarray(rgb).save(folder / f"{frame.name}.png")

        yield write


def _picture(av: Any, frame: Frame, rgb: np.ndarray) -> Any:
    """``rgb`` as the encoders take it: yuv420p with an odd last row or column cropped, at ``frame``'s index."""
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), "rgb24").reformat(format="yuv420p")
    picture.pts = frame.index
    return picture


class _Encoder:
    """An MPEG-4 video encoded as :func:`_picture`'s come, at the source's frame rate, each at its index's time (a
    skipped frame holds the one before). Its stream starts at the first picture, whose size it takes; leaving the
    block without an error flushes the frames the encoder still holds. An ``optional`` one (the view) that fails
    after its first frame is dropped with a warning, and the run goes on without it."""

    def __init__(
        self, source: FrameSource, target: str, format: str | None = None, name: str | None = None,
        optional: bool = False,
    ) -> None:  # fmt: skip
        self.av = pyav(target, "or leave out --view" if optional else "or give a folder of frame images")
        self.source, self.name, self.optional = source, name or target, optional
        try:
            self.container = self.av.open(target, "w", format=format)
        except (self.av.error.FFmpegError, ValueError) as error:
            raise UserInputError(self._cannot_write(error)) from error
        self.stream: Any = None
        self.dropped = False

    def write(self, picture: Any) -> None:
        if self.dropped:
            return
        if self.stream is None:
            self._start(picture.height, picture.width)
        try:
            self.container.mux(self.stream.encode(picture))
        except self.av.error.FFmpegError as error:
            if not self.optional:
                raise
            logger.warning(f"{self.name}: stopped sending the outlined frames there ({error}); the run goes on.")
            self.dropped = True
            self.container.close()

    def _start(self, height: int, width: int) -> None:
        rate = self.source.rate
        if rate.numerator > MPEG4_MAX_TIME_BASE:  # MPEG-4's time base is 1/rate with at most 16 bits
            rate = Fraction(round(rate))
        self.stream = self.container.add_stream("mpeg4", rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        try:
            self.container.start_encoding()  # opens the file or address
        except self.av.error.FFmpegError as error:
            raise UserInputError(self._cannot_write(error)) from error

    def _cannot_write(self, error: Exception) -> str:
        return (
            f"{self.name}: FFmpeg cannot write a video there ({error}); give a writable file or an address such as "
            "udp://127.0.0.1:5001?pkt_size=1316."
        )

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if self.dropped:
            return
        try:
            try:
                if kind is None and self.stream is not None:
                    self.container.mux(self.stream.encode())
            finally:
                self.container.close()
        except self.av.error.FFmpegError as error:
            if not self.optional:
                raise
            logger.warning(f"{self.name}: the last outlined frames were not sent ({error}).")


def pyav(target: str, otherwise: str = "or give a folder of frame images") -> Any:
    """PyAV's ``av`` module, or the error that says how to install it (``otherwise``: what else the user can do)."""
    try:
        import av
    except ImportError as error:
        raise UserInputError(
            f"{target}: videos and streams are read and written with PyAV, which is not installed: "
            f"pip install -e '.[live]' ({otherwise})."
        ) from error
    return av
