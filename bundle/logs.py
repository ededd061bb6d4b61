"""Run logs: a file beside the TensorBoard events, so a finished run keeps its console output."""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def log_to_file(path: str | os.PathLike, level: int = logging.INFO) -> logging.Handler:
    """Copy every log record of the root logger to ``path`` (appended), creating its folder.

    Configs call it from ``initialize``; calling it twice for the same file adds no second copy.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return handler
    handler = logging.FileHandler(path)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    return handler
