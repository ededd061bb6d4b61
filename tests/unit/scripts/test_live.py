"""``nerveseg live``: frames from a folder, a video or a stream, outlined back, each latency, and the summary."""

from __future__ import annotations

import csv
import json
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from conftest import BUNDLE_ROOT, TINY_NETWORK, tiny_checkpoint
from nerveseg.bundle.inference.streaming import StreamingSegmenter
from nerveseg.scripts import video_frames
from nerveseg.scripts.live import latency_summary, live, outlined
from nerveseg.scripts.video_frames import Frame, FrameSource
from nerveseg.utils.errors import UserInputError

OVERRIDES = {"network_def": TINY_NETWORK, "inference_backend": "torch", "inference_precision": "float32"}


@pytest.fixture
def checkpoint(tmp_path):
    """The tiny network's ``models/model.pt``, trained (so says training_settings.json) at 32x32."""
    return tiny_checkpoint(tmp_path / "models", [32, 32])


def random_frames(count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 64), dtype=np.uint8) for _ in range(count)]


def test_a_folder_of_frames_is_outlined_in_order_with_each_frames_latency(checkpoint, tmp_path):
    source = tmp_path / "frames"
    source.mkdir()
    frames = random_frames()
    for index, frame in enumerate(frames):
        Image.fromarray(np.stack([frame] * 3, axis=2)).save(source / f"{index:03d}.png")  # colour files: read as gray
    (source / "notes.txt").write_text("not a frame")
    summary = live(str(source), str(tmp_path / "out"), str(BUNDLE_ROOT), str(checkpoint), overrides=OVERRIDES)
    with open(tmp_path / "out" / "latency.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["frame"] for row in rows] == [f"{i:03d}" for i in range(6)]
    assert summary["frames"] == 6 and summary["size"] == [32, 32] and summary["backend"] == "torch"
    assert summary["path"] == "torch float32 channels-last"  # inference.json's layout
    assert json.loads((tmp_path / "out" / "live.json").read_text())["p50_ms"] == summary["p50_ms"]
    segmenter = StreamingSegmenter.from_bundle(BUNDLE_ROOT, checkpoint, overrides=OVERRIDES)
    for index, frame in enumerate(frames):
        mask = segmenter(frame)
        assert int(rows[index]["mask_pixels"]) == mask.sum()
        written = np.asarray(Image.open(tmp_path / "out" / f"{index:03d}.png"))
        np.testing.assert_array_equal(written, outlined(frame, mask))


def test_a_video_is_read_and_written_back_with_the_outlines(checkpoint, tmp_path):
    av = pytest.importorskip("av", reason="videos need PyAV: pip install -e '.[live]'")
    video = tmp_path / "probe.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in random_frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.stack([frame] * 3, 2), format="rgb24")))
        container.mux(stream.encode())
    summary = live(str(video), str(tmp_path / "out"), str(BUNDLE_ROOT), str(checkpoint), overrides=OVERRIDES)
    assert summary["frames"] == 6
    with av.open(str(tmp_path / "out" / "probe.mp4")) as written:
        decoded = [f.to_ndarray(format="rgb24") for f in written.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (48, 64, 3)
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_outlines_mark_only_the_boundary_and_the_summary_sets_the_first_frame_apart():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    rgb = outlined(np.full((7, 7), 100, np.uint8), mask)
    red = (rgb == [255, 0, 0]).all(axis=2)
    assert red.sum() == 16 and not red[2:5, 2:5].any() and (rgb[~red] == 100).all()
    summary = latency_summary([{"ms": 900.0}, {"ms": 10.0}, {"ms": 30.0}, {"ms": 20.0}])
    assert summary["first_ms"] == 900.0 and summary["p50_ms"] == 20.0 and summary["frames_per_second"] == 50.0


def test_missing_sources_and_empty_folders_are_refused(checkpoint, tmp_path):
    with pytest.raises(UserInputError, match="does not exist; give a video file, a folder of frames, a stream address"):
        live(str(tmp_path / "none.mp4"), str(tmp_path / "out"), str(BUNDLE_ROOT), str(checkpoint))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"empty gave no frames; a folder needs \.png"):
        live(str(tmp_path / "empty"), str(tmp_path / "out"), str(BUNDLE_ROOT), str(checkpoint), overrides=OVERRIDES)


def _assert_skips_add_up(indices: list[int], skipped: list[int]) -> None:
    """Each frame's ``skipped`` is the gap before it in the source's numbering."""
    assert skipped == [index - previous - 1 for previous, index in zip([-1, *indices[:-1]], indices, strict=True)]


def test_a_stream_is_read_at_its_newest_frame_until_max_frames(checkpoint, tmp_path):
    av = pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    source = "testsrc=size=64x48:rate=25"  # FFmpeg's generated source decodes faster than the network runs
    summary = live(source, str(tmp_path / "out"), str(BUNDLE_ROOT), str(checkpoint), overrides=OVERRIDES,
                   input_format="lavfi", max_frames=4)  # fmt: skip
    assert summary["frames"] == 4 and summary["ended"] == "max_frames 4"
    with open(tmp_path / "out" / "latency.csv") as f:
        rows = list(csv.DictReader(f))
    _assert_skips_add_up([int(row["frame"]) for row in rows], [int(row["skipped"]) for row in rows])
    assert summary["skipped"] == sum(int(row["skipped"]) for row in rows)
    with av.open(str(tmp_path / "out" / "live.mp4")) as written:
        times = [frame.time for frame in written.decode(video=0)]
    assert times == pytest.approx([int(row["frame"]) / 25 for row in rows])  # a skipped frame's time stays empty


class _Decoded:
    """What PyAV decodes, as far as the frame source reads it."""

    def to_ndarray(self, format: str) -> np.ndarray:
        assert format == "gray"
        return np.full((48, 64), 100, np.uint8)


def _counted(count: int, pause: float = 0.0, fail_at: int | None = None):
    for index in range(count):
        if index == fail_at:
            raise OSError("the stream broke")
        time.sleep(pause)
        yield index, _Decoded()


def _no_reader_left() -> bool:
    return not any(thread.name == "nerveseg-live-reader" for thread in threading.enumerate())


def test_a_slow_reader_of_a_stream_gets_its_newest_frames_and_the_last(monkeypatch):
    monkeypatch.setattr(FrameSource, "_decoded", lambda self: _counted(40))
    read = []
    for frame in FrameSource("rtsp://probe/stream"):
        read.append(frame)
        time.sleep(0.005)
    _assert_skips_add_up([frame.index for frame in read], [frame.skipped for frame in read])
    assert read[-1].index == 39 and len(read) < 40 and _no_reader_left()


def test_a_stream_that_breaks_raises_in_the_reader_after_its_frames(monkeypatch):
    monkeypatch.setattr(FrameSource, "_decoded", lambda self: _counted(5, fail_at=3))
    read = []
    with pytest.raises(OSError, match="the stream broke"):
        for frame in FrameSource("udp://probe"):
            read.append(frame.index)
            time.sleep(0.01)
    assert read and read[-1] == 2 and _no_reader_left()  # the frames before the break, the last of them included


def test_a_source_that_breaks_ends_the_run_and_keeps_what_was_segmented(checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    monkeypatch.setattr(FrameSource, "_decoded", lambda self: _counted(5, pause=0.01, fail_at=3))
    run = dict(bundle_root=str(BUNDLE_ROOT), checkpoint=str(checkpoint), overrides=OVERRIDES)
    summary = live("udp://probe", str(tmp_path / "out"), **run)
    assert summary["frames"] >= 1 and summary["ended"] == "source error (OSError: the stream broke)"
    assert (tmp_path / "out" / "live.mp4").is_file() and (tmp_path / "out" / "latency.csv").is_file()
    monkeypatch.setattr(FrameSource, "_decoded", lambda self: _counted(5, fail_at=0))
    with pytest.raises(OSError, match="the stream broke"):  # nothing segmented: the error itself
        live("udp://probe", str(tmp_path / "out2"), **run)
    assert not (tmp_path / "out2" / "live.mp4").exists()


def test_ctrl_c_ends_the_run_and_keeps_what_was_segmented(checkpoint, tmp_path, monkeypatch):
    av = pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    segment = StreamingSegmenter.__call__

    def interrupted_at_the_third(self, frame):
        interrupted_at_the_third.calls += 1
        if interrupted_at_the_third.calls == 3:
            raise KeyboardInterrupt
        return segment(self, frame)

    interrupted_at_the_third.calls = 0
    monkeypatch.setattr(StreamingSegmenter, "__call__", interrupted_at_the_third)
    summary = live("testsrc=size=64x48:rate=25", str(tmp_path / "out"), str(BUNDLE_ROOT), str(checkpoint),
                   overrides=OVERRIDES, input_format="lavfi")  # fmt: skip
    assert summary["frames"] == 2 and summary["ended"] == "Ctrl-C"
    with av.open(str(tmp_path / "out" / "live.mp4")) as written:
        assert len(list(written.decode(video=0))) == 2


def test_a_source_ffmpeg_cannot_open_is_named_with_the_fix(checkpoint, tmp_path):
    av = pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    run = dict(out=str(tmp_path / "out"), bundle_root=str(BUNDLE_ROOT), checkpoint=str(checkpoint), overrides=OVERRIDES)
    with pytest.raises(UserInputError, match=r"no_such_filter: FFmpeg cannot open it as lavfi \(.*\); check the"):
        live("no_such_filter", input_format="lavfi", **run)
    if "v4l2" not in av.formats_available:
        with pytest.raises(UserInputError, match=r"this PyAV's FFmpeg has no v4l2 input \(it has .*lavfi\): install"):
            live("/dev/video0", input_format="v4l2", **run)
    with pytest.raises(UserInputError, match="max_frames is 0: give a whole number >= 1"):
        live("/dev/video0", input_format="v4l2", max_frames=0, **run)


def test_the_command_line_reads_numbers_as_devices_and_refuses_unquoted_options(checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    from nerveseg.scripts import cli

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the command installs the bundle's hook
    monkeypatch.chdir(BUNDLE_ROOT)
    settings = f"--network_def '{json.dumps(TINY_NETWORK)}' --inference_backend torch --inference_precision float32"
    common = ["--checkpoint", str(checkpoint), f"--overrides={settings}", "--out", str(tmp_path / "out")]
    cli.main(["live", "testsrc=size=64x48:rate=25", "--input_format", "lavfi", "--max_frames", "2", *common])
    assert json.loads((tmp_path / "out" / "live.json").read_text())["frames"] == 2
    with pytest.raises(UserInputError, match="^0: FFmpeg cannot open it as lavfi"):  # fire gave 0, an int
        cli.main(["live", "0", "--input_format", "lavfi", *common])
    with pytest.raises(UserInputError, match=r"input_options is '\{video_size: 640x480\}', not a mapping"):
        cli.main(["live", "/dev/video0", "--input_format", "v4l2", "--input_options", "{video_size: 640x480}", *common])


def test_the_outlined_frames_are_sent_to_the_view_as_they_are_made(checkpoint, tmp_path):
    av = pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    run = dict(bundle_root=str(BUNDLE_ROOT), checkpoint=str(checkpoint), overrides=OVERRIDES)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(random_frames(3)):
        Image.fromarray(frame).save(frames / f"{index}.png")
    live(str(frames), str(tmp_path / "out"), view=str(tmp_path / "view.ts"), **run)  # a file stands for an address
    with av.open(str(tmp_path / "view.ts")) as view:
        assert view.format.name == "mpegts"
        shown = [frame.to_ndarray(format="rgb24") for frame in view.decode(video=0)]
    assert len(shown) == 3 and shown[0].shape == (48, 64, 3)
    assert len(list((tmp_path / "out").glob("*.png"))) == 3  # the folder's own output is still written
    with pytest.raises(
        UserInputError, match="FFmpeg cannot write a video there .*; give a writable file or an address"
    ):
        live(str(frames), str(tmp_path / "out2"), view=str(tmp_path / "no" / "such" / "view.ts"), **run)


class _BreaksAfterTheFirstFrame:
    """A container whose connection breaks after its first frame, as a view whose player went away."""

    def __init__(self, container, av):
        self.container, self.av, self.muxed = container, av, 0

    def mux(self, packets):
        self.muxed += 1
        if self.muxed > 1:
            raise self.av.error.FFmpegError(32, "Broken pipe")
        return self.container.mux(packets)

    def __getattr__(self, name):
        return getattr(self.container, name)


def test_a_view_that_breaks_is_dropped_and_the_video_is_kept(checkpoint, tmp_path, monkeypatch, caplog):
    av = pytest.importorskip("av", reason="streams need PyAV: pip install -e '.[live]'")
    opened = video_frames._Encoder.__init__

    def breaking_view(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        if self.optional:
            self.container = _BreaksAfterTheFirstFrame(self.container, av)

    monkeypatch.setattr(video_frames._Encoder, "__init__", breaking_view)
    run = dict(bundle_root=str(BUNDLE_ROOT), checkpoint=str(checkpoint), overrides=OVERRIDES)
    summary = live("testsrc=size=64x48:rate=25", str(tmp_path / "out"), input_format="lavfi", max_frames=4,
                   view=str(tmp_path / "view.ts"), **run)  # fmt: skip
    assert summary["frames"] == 4 and "view.ts: stopped sending the outlined frames there" in caplog.text
    with av.open(str(tmp_path / "out" / "live.mp4")) as written:
        assert len(list(written.decode(video=0))) == 4


@pytest.mark.parametrize("rate, frame_time", [(Fraction(30000, 1001), 1001 / 30000), (Fraction(120000, 1001), 1 / 120)])
def test_videos_keep_the_sources_rate_within_what_mpeg4_can_say(tmp_path, rate, frame_time):
    av = pytest.importorskip("av", reason="videos need PyAV: pip install -e '.[live]'")
    source = FrameSource(str(tmp_path))
    source.rate = rate
    with video_frames._Encoder(source, str(tmp_path / "rate.mp4")) as encoder:
        for index in range(3):
            frame = Frame(index, str(index), np.zeros((48, 64), np.uint8))
            encoder.write(video_frames._picture(av, frame, np.zeros((48, 64, 3), np.uint8)))
    with av.open(str(tmp_path / "rate.mp4")) as written:
        times = [frame.time for frame in written.decode(video=0)]
    assert times == pytest.approx([0, frame_time, 2 * frame_time])


def test_a_video_with_gaps_is_read_at_its_frame_rate_not_its_mean_rate(tmp_path):
    av = pytest.importorskip("av", reason="videos need PyAV: pip install -e '.[live]'")
    written = FrameSource(str(tmp_path))
    written.rate = Fraction(30)
    with video_frames._Encoder(written, str(tmp_path / "gaps.mp4")) as encoder:
        for index in (0, 5, 6, 7):  # as nerveseg live writes a stream it skipped frames of
            frame = Frame(index, str(index), np.zeros((48, 64), np.uint8))
            encoder.write(video_frames._picture(av, frame, np.zeros((48, 64, 3), np.uint8)))
    source = FrameSource(str(tmp_path / "gaps.mp4"))
    assert len(list(source)) == 4 and source.rate == 30
