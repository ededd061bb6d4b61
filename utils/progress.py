"""Progress of a loop: a tqdm bar on a terminal, a few plain lines in a log or a pipe.

A bar redraws itself with carriage returns, which a log file or CI output keeps as one long garbled line; when
standard error is not a terminal, :func:`progress` prints a handful of whole lines instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

__all__ = ["format_duration", "is_terminal", "progress"]

Item = TypeVar("Item")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: standard error, where progress goes) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1:02:05"``, ``65`` -> ``"1:05"``: the way a clock shows elapsed time."""
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress(
    items: Iterable[Item], desc: str, total: int | None = None, lines: int = 4, stream: TextIO | None = None
) -> Iterator[Item]:
    """Yield ``items``, showing progress: a bar on a terminal, else about ``lines`` lines such as
    ``Checking training: 330/660 (50%) in 0:04``.

    Args:
        items: what to iterate.
        desc: what is being done, the start of each line.
        total: the number of items, if ``items`` has no length.
        lines: plain lines printed over the loop (the last one when it ends); at least 1.
        stream: where to write; default standard error.
    """
    stream = sys.stderr if stream is None else stream
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if is_terminal(stream):
        with tqdm(items, desc=desc, total=total, file=stream) as bar:  # closed on error, so the error prints last
            yield from bar
        return
    start, done = time.monotonic(), 0
    marks = {round(total * k / max(lines, 1)) for k in range(1, max(lines, 1) + 1)} if total else set()
    for item in items:
        yield item
        done += 1
        if done in marks:
            share = f" ({done / total:.0%})" if total else ""
            print(f"{desc}: {done}/{total}{share} in {format_duration(time.monotonic() - start)}", file=stream,
                  flush=True)  # fmt: skip
    if not total:
        print(f"{desc}: {done} in {format_duration(time.monotonic() - start)}", file=stream, flush=True)
