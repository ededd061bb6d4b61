"""Progress: a few whole lines when the output is not a terminal, clock-style durations."""

from __future__ import annotations

import io

from nerveseg.utils.progress import format_duration, progress


def test_plain_lines_in_a_pipe():
    stream = io.StringIO()
    assert list(progress(range(10), "Checking training", stream=stream)) == list(range(10))
    lines = stream.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "Checking training: 2/10 (20%)",
        "Checking training: 5/10 (50%)",
        "Checking training: 8/10 (80%)",
        "Checking training: 10/10 (100%)",
    ]
    assert "\r" not in stream.getvalue()


def test_without_a_length_one_line_at_the_end():
    stream = io.StringIO()
    list(progress(iter("abc"), "Converting", stream=stream))
    assert stream.getvalue().startswith("Converting: 3 in 0:0")


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (0, 65, 3725)] == ["0:00", "1:05", "1:02:05"]
