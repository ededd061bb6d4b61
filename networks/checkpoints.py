"""Reading and writing state dicts with errors that name the file, and without half-written files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["read_state_dict", "save_atomically"]


def read_state_dict(path: str | os.PathLike, what: str = "Checkpoint") -> dict[str, torch.Tensor]:
    """Load a state dict of tensors (also one nested under a ``"state_dict"`` or ``"model"`` key) on the CPU.

    Args:
        path: the file; only tensors and plain containers are unpickled (``weights_only``).
        what: how the error messages name the file, e.g. ``"Pretrained weights"``.

    Raises:
        ValueError: the file is missing, unreadable, or not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors for damaged files
        raise ValueError(f"Cannot read {what.lower()} {path}: {str(error).splitlines()[0]}") from error
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors.")
    return dict(state)


def save_atomically(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary name in the same folder, so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(obj, partial)
    os.replace(partial, path)
    return path
