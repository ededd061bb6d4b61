"""The folder of converted OpenVINO models: one entry per network weights and input size, written atomically.

An entry ``{Network}-{C}x{H}x{W}-{key}/`` holds ``model.xml``, ``model.bin`` and ``conversion.json`` (the network,
versions, conversion time and the largest logit difference from torch found at conversion). The folder keeps the
:data:`CACHE_ENTRIES` most recently used entries and can be deleted at any time; a read-only folder is used as it is.
:mod:`~.backends` names the entries and decides when to convert.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nerveseg.utils.files import atomic_path

__all__ = ["CACHE_ENTRIES", "cache_dir_beside", "check_writable", "prune", "save_entry", "touch"]

logger = logging.getLogger(__name__)

CACHE_ENTRIES = 4
"""How many converted models a cache folder keeps, the most recently used; older entries are removed."""


def cache_dir_beside(checkpoint: str | os.PathLike, name: str = "openvino") -> str:
    """The folder ``name`` beside ``checkpoint``: where the configs cache the models converted from it."""
    return str(Path(checkpoint).parent / name)


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a temporary file in it; raises the ``OSError`` where that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=folder).close()


def save_entry(model: Any, entry: Path, info: dict[str, Any]) -> None:
    """Write ``entry`` through a temporary folder beside it, keeping another process's complete entry.

    A write that fails once the folder was found writable (a full disk) only costs the cache: it is logged.
    """
    import openvino

    try:
        with atomic_path(entry, replace=False) as partial:
            partial.mkdir()
            openvino.save_model(model, partial / "model.xml", compress_to_fp16=False)
            (partial / "conversion.json").write_text(json.dumps(info, indent=4) + "\n")
    except FileExistsError:
        return
    except OSError as error:
        logger.warning(f"OpenVINO: could not cache the converted model in {entry} ({error}); it is used from memory")
        return
    prune(entry.parent, CACHE_ENTRIES)


def prune(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used entries of ``folder``."""
    entries = [p for p in folder.iterdir() if p.is_dir() and (p / "conversion.json").is_file()]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def touch(entry: Path) -> None:
    """Mark ``entry`` as used now (what :func:`prune` keeps)."""
    with contextlib.suppress(OSError):  # a read-only cache is used as it is
        os.utime(entry)
