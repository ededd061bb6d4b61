"""Files written so that a reader, or a run killed halfway, never sees half a file; state dicts read with errors
that name the file.

Every writer of the package goes through :func:`atomic_path`: it writes to a hidden temporary name beside the
target and renames it over the target only once the write is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerveseg.utils.errors import UserInputError

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_path", "read_state_dict", "save_state_dict", "write_json_atomically", "write_text_atomically"]


@contextmanager
def atomic_path(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write a file or folder to; rename it over ``path`` on success.

    The temporary name keeps the suffix, so writers that choose a format by extension still work. On error the
    temporary file or folder is removed and ``path`` is left as it was; a folder replaces an old folder only once
    the new one is complete.

    Args:
        path: the file or folder to write.
        replace: ``False`` never replaces a non-empty folder at ``path`` (one that another process completed in
            the meantime, say): a ``FileExistsError`` is raised instead and the new folder is discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield partial
        if partial.is_dir() and path.is_dir() and not replace:
            try:
                os.replace(partial, path)  # replaces an empty folder only
            except OSError as error:
                raise FileExistsError(f"{path} exists and is not empty; it was left as it was.") from error
        elif partial.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(partial, path)
            shutil.rmtree(old)
        else:
            os.replace(partial, path)
    finally:
        _remove(partial)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary name; create the folder."""
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_json_atomically(path: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` as indented JSON (a config override, a report) to ``path`` through a temporary name."""
    return write_text_atomically(path, json.dumps(value, indent=4) + "\n")


def save_state_dict(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary name in the same folder, so that a reader never sees a half-written file."""
    import torch  # here: the commands that write no tensors start without torch's import (a second or more)

    with atomic_path(path) as partial:
        torch.save(obj, partial)
    return Path(path)


def read_state_dict(path: str | os.PathLike, what: str = "Checkpoint") -> dict[str, torch.Tensor]:
    """Load a state dict of tensors (also one nested under a ``"state_dict"`` or ``"model"`` key) on the CPU.

    Args:
        path: the file; only tensors and plain containers are unpickled (``weights_only``).
        what: how the error messages name the file, e.g. ``"Pretrained weights"``.

    Raises:
        UserInputError: the file is missing, unreadable, or not a state dict of tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{what} file {path} does not exist; check the path given for it.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors for damaged files
        raise UserInputError(f"Cannot read {what.lower()} {path}: {str(error).splitlines()[0]}") from error
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(f"{path} is not a state dict of tensors.")
    return dict(state)
