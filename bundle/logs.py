"""Run logs: a file beside the TensorBoard events, so a finished run keeps its console output."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def log_to_file(path: str | os.PathLike, level: int = logging.INFO) -> logging.Handler | None:
    """Copy every log record of the root logger to ``path`` (appended), creating its folder.

    Configs call it from ``initialize``; calling it twice for the same file adds no second copy. In a distributed
    run only rank 0 writes (and ``None`` is returned elsewhere), so the processes do not interleave one file.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
        return None
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
