"""What every benchmark part writes: its numbers as JSON and its tables as markdown, side by side in one folder."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nerveseg.utils.files import write_text_atomically

__all__ = ["mean_sd", "ms", "sample_sd", "write_results"]


def ms(timing: dict[str, float]) -> str:
    """Seconds ``{"median", "min", "max"}`` as ``"median [min, max]"`` in milliseconds."""
    return f"{1e3 * timing['median']:.0f} [{1e3 * timing['min']:.0f}, {1e3 * timing['max']:.0f}]"


def sample_sd(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1) of ``values``; ``None`` for fewer than two, where it is undefined."""
    return statistics.stdev(values) if len(values) > 1 else None


def mean_sd(values: Sequence[float], signed: bool = False) -> str:
    """``"mean ± sd"`` to four places (sd ``n/a`` for one value, ``-`` for no value); ``signed`` shows the mean's
    sign."""
    if not values:
        return "-"
    mean = statistics.mean(values)
    sd = "n/a" if len(values) < 2 else f"{sample_sd(values):.4f}"
    return f"{mean:+.4f} ± {sd}" if signed else f"{mean:.4f} ± {sd}"


def write_results(folder: str | os.PathLike, name: str, result: Any, markdown: str) -> tuple[Path, Path]:
    """Write ``folder/{name}.json`` and ``folder/{name}.md`` (each through a temporary file); print the table."""
    folder = Path(folder)
    paths = (
        write_text_atomically(folder / f"{name}.json", json.dumps(result, indent=2)),
        write_text_atomically(folder / f"{name}.md", markdown),
    )
    print(markdown, flush=True)
    print(f"Saved {paths[0]} and {paths[1]}", flush=True)
    return paths
